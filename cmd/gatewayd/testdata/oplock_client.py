# An SMB2 client (Samba's client library, python3-samba) that opens one
# file with a batch oplock and keeps it open, driven line by line on stdin:
#   read          -> the file's content, hex
#   write HEX     -> HEX written at offset 0 through the open handle
#   quit
#   -> "broken" instead, and the client ends, when smbd has sent an
#      oplock break: the library handles them on SMB1 only, and on SMB2
#      fails the next call with NT_STATUS_INVALID_NETWORK_RESPONSE
# Usage: oplock_client.py HOST SHARE USER PASSWORD FILE (port 445: this
# client library connects to no other).
import os
import sys
import tempfile

from samba import NTSTATUSError, credentials, param
from samba.samba3 import libsmb_samba_internal as libsmb
from samba.samba3 import param as s3param

REQUEST_BATCH_OPLOCK = 4
FILE_READ_DATA, FILE_WRITE_DATA = 0x1, 0x2
FILE_SHARE_READ, FILE_SHARE_WRITE = 0x1, 0x2
FILE_OPEN = 1
NT_STATUS_INVALID_NETWORK_RESPONSE = 0xC00000C3

host, share, user, password, name = sys.argv[1:6]
# The library needs a loaded configuration of its own (without one the
# connection fails with NT_STATUS_INVALID_PARAMETER).
with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
    conf.write("[global]\nclient min protocol = SMB2_02\nclient max protocol = SMB3\nclient signing = required\n")
try:
    s3param.get_context().load(conf.name)
    lp = param.LoadParm(conf.name)
finally:
    os.unlink(conf.name)
creds = credentials.Credentials()
creds.guess(lp)
creds.set_username(user)
creds.set_password(password)
conn = libsmb.Conn(host, share, lp, creds)
fnum = conn.create(name, CreateFlags=REQUEST_BATCH_OPLOCK,
                   DesiredAccess=FILE_READ_DATA | FILE_WRITE_DATA,
                   ShareAccess=FILE_SHARE_READ | FILE_SHARE_WRITE,
                   CreateDisposition=FILE_OPEN)
print("open", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
        break
    if cmd[0] == "read":
        try:
            print(conn.read(fnum, 0, 1 << 20).hex(), flush=True)
        except NTSTATUSError as e:
            if e.args[0] != NT_STATUS_INVALID_NETWORK_RESPONSE:
                raise
            # The library's answer to the unsolicited oplock break smbd
            # sent (an SMB2 message it does not expect): the connection
            # is gone with the oplock.
            print("broken", flush=True)
            sys.exit(0)
    elif cmd[0] == "write":
        conn.write(fnum, bytes.fromhex(cmd[1]), 0)
        print("ok", flush=True)
conn.close(fnum)
