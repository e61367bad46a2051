// The layer store's public API: unpack layer blobs once per chain ID, list,
// look up and delete them. See unpack.ts for the on-disk layout and the
// safety rules.
export { chainId, chainIds, digestHex, isSha256Digest } from './chain';
export { compressionFromMagic, compressionFromMediaType, type Compression } from './decompress';
export { cleanEntryPath, classifyEntry, xattrDecision } from './paths';
export { TarFormatError, TarReader, type TarEntryType, type TarHeader } from './tar-reader';
export {
  cleanupLayerStore,
  LayerStore,
  type LayerStoreOptions,
  type UnpackedLayer,
  type UnpackRequest,
} from './unpack';
