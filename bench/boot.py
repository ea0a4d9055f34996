#!/usr/bin/env python3
"""Boot benchmarks, side by side in one run: isola-vmm against QEMU microvm.

  boot.py tiny  --vmm BIN --guest tiny.elf            (on this host's KVM)
  boot.py linux --vmm BIN --kernel vmlinux --initramfs cpio --scratch DIR
                                                      (where KVM runs Linux)

Prints one JSON object with medians (ms) and memory (KiB). Timings are
wall-clock of whole processes, launch to exit; runs alternate between the
two VMMs so that background load hits both alike.
"""
import argparse, json, os, re, socket, statistics, struct, subprocess, sys, time

QEMU = "qemu-system-x86_64"
QEMU_BASE = [QEMU, "-M", "microvm,acpi=off", "-enable-kvm", "-nodefaults",
             "-no-user-config", "-display", "none", "-no-reboot"]


def timed(cmd, stdin=None, timeout=120):
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, input=stdin)
    return (time.perf_counter() - t) * 1000.0, p


def peak_rss_kib(cmd):
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS=%M"] + cmd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    m = re.search(rb"MAXRSS=(\d+)", p.stderr)
    return int(m.group(1)) if m else None


def alternate(cmds, runs, check):
    res = {k: [] for k in cmds}
    for name, cmd in cmds.items():  # warm-up: page cache, first-run costs
        timed(cmd)
    for _ in range(runs):
        for name, cmd in cmds.items():
            ms, p = timed(cmd)
            check(name, p)
            res[name].append(ms)
    return {k: statistics.median(v) for k, v in res.items()}, res


def rss_split(pid, guest_mib):
    """(total RSS, RSS of the guest-RAM mapping) in KiB, from smaps."""
    total = guest = 0
    size = rss = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                total += rss
                if size >= guest_mib * 1024:
                    guest += rss
    return total, guest


def tiny(a):
    vmm = [a.vmm, "--force", "--kernel", a.guest, "--no-initramfs",
           "--console", "stdout", "--mem", "256", "--cmdline-extra", "tiny.exit=poweroff"]
    qemu = QEMU_BASE + ["-cpu", "host,-arch-capabilities", "-m", "256", "-serial", "stdio",
                        "-kernel", a.guest, "-append", "tiny.exit=triple"]

    def check(name, p):
        if b"TINY: hello" not in p.stdout:
            sys.exit(f"{name}: no guest marker: {p.stdout[-300:]!r} {p.stderr[-300:]!r}")

    med, raw = alternate({"isola-vmm": vmm, "qemu-microvm": qemu}, a.runs, check)
    rss = {"isola-vmm": statistics.median(peak_rss_kib(vmm) for _ in range(3)),
           "qemu-microvm": statistics.median(peak_rss_kib(qemu) for _ in range(3))}
    return {"median_ms": med, "runs_ms": raw, "peak_rss_kib": rss}


def agent_ping(uds, timeout=60.0):
    """Connect through the vsock bridge and ping the agent; True on Pong."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(uds)
            s.sendall(b"CONNECT 1024\n")
            line = b""
            while not line.endswith(b"\n"):
                c = s.recv(1)
                if not c:
                    raise OSError("closed")
                line += c
            if not line.startswith(b"OK "):
                raise OSError("refused")
            body = json.dumps({"id": 1, "body": {"type": "ping"}}).encode()
            s.sendall(struct.pack(">I", len(body)) + body)
            hdr = s.recv(4)
            n = struct.unpack(">I", hdr)[0]
            reply = json.loads(s.recv(n))
            s.close()
            if reply["body"]["type"] == "pong":
                return True
        except (OSError, ValueError, KeyError, struct.error):
            time.sleep(0.005)
    return False


# The initramfs has no /dev: mount devtmpfs to reach the serial port.
INIT_HEAD = ("#!/bin/busybox sh\n/bin/busybox mkdir -p /dev\n"
             "/bin/busybox mount -t devtmpfs dev /dev\n"
             "/bin/busybox echo BENCH-INIT-REACHED > /dev/ttyS0\n")


def make_init_cpio(path, scratch):
    """An initramfs whose /init prints a marker and resets at once (QEMU)."""
    root = os.path.join(scratch, "qemu-initrd")
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    subprocess.run(["cp", "/bin/busybox", os.path.join(root, "bin/busybox")], check=True)
    with open(os.path.join(root, "init"), "w") as f:
        f.write(INIT_HEAD + "/bin/busybox reboot -f\n")
    os.chmod(os.path.join(root, "init"), 0o755)
    files = subprocess.run("find . | sort", shell=True, cwd=root, check=True,
                           stdout=subprocess.PIPE).stdout
    with open(path, "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                       stdout=out, check=True)


def linux(a):
    os.makedirs(a.scratch, exist_ok=True)
    qcpio = os.path.join(a.scratch, "qemu-init.cpio")
    make_init_cpio(qcpio, a.scratch)
    vmm = [a.vmm, "--ping", "--mem", "256", "--kernel", a.kernel, "--initramfs", a.initramfs]
    qemu = QEMU_BASE + ["-cpu", "host", "-m", "256", "-serial", "stdio", "-kernel", a.kernel,
                        "-initrd", qcpio, "-append",
                        "console=ttyS0 loglevel=1 reboot=t panic=-1 rdinit=/init"]

    def check(name, p):
        ok = b"agent ready" in p.stdout if name == "isola-vmm" else b"BENCH-INIT-REACHED" in p.stdout
        if not ok:
            sys.exit(f"{name}: no marker: {p.stdout[-300:]!r} {p.stderr[-500:]!r}")

    # Time to "ready": isola-vmm reports when its agent answered (agent
    # ready in N ms, measured from its own start); for QEMU, the time from
    # launch until /init's marker appears on the serial console.
    def isola_ready():
        ms, p = timed(vmm)
        check("isola-vmm", p)
        m = re.search(rb"agent ready in (\d+) ms", p.stdout)
        return float(m.group(1)), ms

    def qemu_ready():
        t = time.perf_counter()
        q = subprocess.Popen(qemu, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        buf, ready = b"", None
        while True:
            chunk = os.read(q.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if ready is None and b"BENCH-INIT-REACHED" in buf:
                ready = (time.perf_counter() - t) * 1000.0
        q.wait()
        total = (time.perf_counter() - t) * 1000.0
        if ready is None:
            sys.exit(f"qemu-microvm: no marker: {buf[-300:]!r}")
        return ready, total

    isola_ready()
    qemu_ready()
    raw = {"isola-vmm": [], "qemu-microvm": []}
    total = {"isola-vmm": [], "qemu-microvm": []}
    for _ in range(a.runs):
        r, t = isola_ready()
        raw["isola-vmm"].append(r)
        total["isola-vmm"].append(t)
        r, t = qemu_ready()
        raw["qemu-microvm"].append(r)
        total["qemu-microvm"].append(t)
    med = {k: statistics.median(v) for k, v in raw.items()}
    med_total = {k: statistics.median(v) for k, v in total.items()}
    # Memory of an idle, booted VM: total RSS and the part that is guest RAM.
    uds = os.path.join(a.scratch, "bench.sock")
    if os.path.exists(uds):
        os.unlink(uds)
    p = subprocess.Popen([a.vmm, "--mem", "256", "--kernel", a.kernel, "--initramfs",
                          a.initramfs, "--vsock-uds", uds],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not agent_ping(uds):
        p.kill()
        sys.exit("isola-vmm: agent did not answer for the memory measurement")
    time.sleep(0.5)
    v_total, v_guest = rss_split(p.pid, 256)
    p.terminate()
    p.wait()
    qinit = os.path.join(a.scratch, "qemu-idle.cpio")
    root = os.path.join(a.scratch, "qemu-initrd")
    with open(os.path.join(root, "init"), "w") as f:
        f.write(INIT_HEAD + "exec /bin/busybox sleep 3600\n")
    files = subprocess.run("find . | sort", shell=True, cwd=root, check=True,
                           stdout=subprocess.PIPE).stdout
    with open(qinit, "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                       stdout=out, check=True)
    qidle = [x if x != qcpio else qinit for x in qemu]
    q = subprocess.Popen(qidle, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    deadline = time.time() + 60
    while b"BENCH-INIT-REACHED" not in buf and time.time() < deadline:
        buf += os.read(q.stdout.fileno(), 4096)
    time.sleep(0.5)
    q_total, q_guest = rss_split(q.pid, 256)
    q.kill()
    q.wait()
    return {"median_ms": med, "runs_ms": raw, "median_total_ms": med_total,
            "rss_kib": {"isola-vmm": {"total": v_total, "guest_ram": v_guest,
                                      "vmm_overhead": v_total - v_guest},
                        "qemu-microvm": {"total": q_total, "guest_ram": q_guest,
                                         "vmm_overhead": q_total - q_guest}}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["tiny", "linux"])
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--guest")
    ap.add_argument("--kernel")
    ap.add_argument("--initramfs")
    ap.add_argument("--scratch", default="/tmp/isola-bench")
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    out = tiny(a) if a.mode == "tiny" else linux(a)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
