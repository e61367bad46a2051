#!/bin/busybox sh
# PID 1 of the test VM's initramfs (hack/vm/build-assets.sh packs it as /init).
#   1. the host / (9p, read-only) under a tmpfs overlay becomes the root; the
#      run's OUTDIR (9p, read-write) is /mnt/out
#   2. busybox init becomes PID 1 of that root (it reaps orphans, as a real
#      init would) and runs stage 2 below: no systemd, cgroup2 mounted at
#      /sys/fs/cgroup by hand with every controller enabled in the root's
#      cgroup.subtree_control (cgroup_no_v1=all on the kernel command line),
#      then /mnt/out/job.sh as root in its own leaf cgroup /vmjob
#   3. job.sh's exit code goes to /mnt/out/job.rc, its output to
#      /mnt/out/job.log (and the console); then power off.
# shellcheck shell=dash
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache \
  9pnet 9pnet_virtio 9p overlay; do
  [ -f "/lib/modules/$m.ko" ] || continue
  insmod "/lib/modules/$m.ko" || echo "capsa-vm: insmod $m failed"
done
fail() {
  echo "capsa-vm: $*"
  poweroff -f
}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower || fail "9p mount of / failed"
mount -t tmpfs -o mode=755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "overlay failed"
R=/newroot
mkdir -p $R/mnt/out $R/capsa-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out $R/mnt/out || fail "9p mount of OUTDIR failed"
cp /bin/busybox $R/capsa-vm/busybox
printf '::sysinit:/capsa-vm/busybox sh /capsa-vm/stage2.sh\n' > $R/etc/inittab

cat > $R/capsa-vm/stage2.sh <<'STAGE2'
bb=/capsa-vm/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mkdir -p /dev/pts /dev/shm /dev/mqueue
ln -sf /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts -o newinstance,ptmxmode=0666,gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=755 run /run
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || echo "capsa-vm: cannot enable $c"
done
$bb hostname capsa-vm
ip link set lo up
rm -f /.dockerenv
echo "capsa-vm: up at $(cut -d' ' -f1 /proc/uptime) s, cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
mkdir /sys/fs/cgroup/vmjob
cd /mnt/out
CAPSA_VM=1 CAPSA_VM_OUT=/mnt/out bash -c 'echo $$ > /sys/fs/cgroup/vmjob/cgroup.procs && exec bash /mnt/out/job.sh' \
  < /dev/null > /mnt/out/job.log 2>&1
echo $? > /mnt/out/job.rc.tmp
mv /mnt/out/job.rc.tmp /mnt/out/job.rc
echo "capsa-vm: job exited $(cat /mnt/out/job.rc 2>/dev/null) at $(cut -d' ' -f1 /proc/uptime) s"
sync
$bb poweroff -f
STAGE2

# Move the kernel's /proc, /sys and /dev over the host's (which 9p would show: the
# host's /proc/self/exe is qemu, and busybox applets exec /proc/self/exe).
mount --move /proc $R/proc
mount --move /sys $R/sys
mount --move /dev $R/dev
exec switch_root $R /capsa-vm/busybox init
