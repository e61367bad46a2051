// Checks on the daemon's JSON log lines that JSON.parse cannot make: the
// same key twice in one line (JSON.parse keeps the last and hides it).

/** The top-level keys of a JSON object text, in order, duplicates kept (JSON.parse would hide them). */
export function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (ch === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(json.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (ch === '{' || ch === '[') {
      depth++;
      expectKey = depth === 1;
    } else if (ch === '}' || ch === ']') {
      depth--;
    } else if (ch === ',' && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/** Every line (of those that are JSON objects) with a key more than once, as "key: line". */
export function duplicateKeys(lines: string[]): string[] {
  const out: string[] = [];
  for (const l of lines) {
    if (!l.startsWith('{')) continue;
    const keys = topLevelKeys(l);
    for (const k of new Set(keys.filter((key, i) => keys.indexOf(key) !== i))) out.push(`${k}: ${l}`);
  }
  return out;
}
