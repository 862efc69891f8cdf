#!/usr/bin/env python3
"""COMMIT one file over NFSv3 and print how long the COMMIT took.

fio's libnfs engine sends UNSTABLE writes and never a COMMIT (it cannot
queue a sync); a Linux client commits what it wrote at close or fsync.
run.sh calls this after the write job so that the figure includes making
the data durable, on both servers.

    commit.py HOST NFSPORT MOUNTPORT EXPORT FILE
    -> "<seconds> <verifier hex>"
"""
import socket
import struct
import sys
import time

NFS, MOUNT = 100003, 100005


def auth_sys():
    machine = b"bench"
    body = struct.pack(">II", 0, len(machine)) + machine + b"\0" * (-len(machine) % 4)
    body += struct.pack(">III", 0, 0, 0)  # uid, gid, no more groups
    return struct.pack(">II", 1, len(body)) + body


def opaque(b):
    return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4)


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port))
        self.xid = 1

    def call(self, prog, proc, args):
        self.xid += 1
        msg = struct.pack(">IIIIII", self.xid, 0, 2, prog, 3, proc) + auth_sys() + struct.pack(">II", 0, 0) + args
        self.s.sendall(struct.pack(">I", len(msg) | 1 << 31) + msg)
        rec = b""
        while True:
            mark = struct.unpack(">I", self.recv(4))[0]
            rec += self.recv(mark & 0x7FFFFFFF)
            if mark & 1 << 31:
                break
        xid, mtype, stat = struct.unpack(">III", rec[:12])
        if xid != self.xid or mtype != 1 or stat != 0:
            sys.exit(f"commit.py: call {prog}/{proc} refused (reply {mtype}, stat {stat})")
        vlen = struct.unpack(">I", rec[16:20])[0]
        off = 20 + vlen + (-vlen % 4)
        if struct.unpack(">I", rec[off:off + 4])[0] != 0:
            sys.exit(f"commit.py: call {prog}/{proc} not accepted")
        return rec[off + 4:]

    def recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                sys.exit("commit.py: connection closed")
            b += chunk
        return b


def fh_at(body, off):
    n = struct.unpack(">I", body[off:off + 4])[0]
    return body[off + 4:off + 4 + n]


def main():
    host, nfsport, mountport, export, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    m = Conn(host, mountport)
    body = m.call(MOUNT, 1, opaque(export.encode()))
    if struct.unpack(">I", body[:4])[0] != 0:
        sys.exit(f"commit.py: mount {export}: status {struct.unpack('>I', body[:4])[0]}")
    root = fh_at(body, 4)
    n = m if mountport == nfsport else Conn(host, nfsport)
    body = n.call(NFS, 3, opaque(root) + opaque(name.encode()))
    if struct.unpack(">I", body[:4])[0] != 0:
        sys.exit(f"commit.py: lookup {name}: status {struct.unpack('>I', body[:4])[0]}")
    fh = fh_at(body, 4)
    start = time.monotonic()
    body = n.call(NFS, 21, opaque(fh) + struct.pack(">QI", 0, 0))
    took = time.monotonic() - start
    if struct.unpack(">I", body[:4])[0] != 0:
        sys.exit(f"commit.py: commit: status {struct.unpack('>I', body[:4])[0]}")
    print(f"{took:.6f} {body[-8:].hex()}")


main()
