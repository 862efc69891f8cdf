package uploadbuffer

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// The header a writer makes from the caller's CRC of the data is the
// header it makes reading the data itself, byte for byte, for data of
// every length around the powers of two and random ones.
func TestAppendHeaderCRCMatches(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 2<<20+3)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	sizes := []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 1000, directWrite - 1, directWrite, directWrite + 1, 1 << 20, 1<<20 + 37, len(data)}
	for i := 0; i < 50; i++ {
		sizes = append(sizes, r.IntN(len(data)+1))
	}
	for _, n := range sizes {
		rec := data[len(data)-n:]
		lsn, durable := LSN(r.Uint64()), LSN(r.Uint64())
		want := appendHeader(nil, lsn, durable, rec)
		got := appendHeaderCRC(nil, lsn, durable, n, crc32.Checksum(rec, castagnoli))
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: header %x from the data's CRC, %x from the data", n, got, want)
		}
	}
}

// Records of every size written with the caller's CRC read back
// (Replay checks each record's CRC), across segments.
func TestLargeRecordsWithCallersCRCReadBack(t *testing.T) {
	fs := vfs.NewMem()
	l := open(t, fs, "/log", 4<<20, 1<<20)
	want := map[LSN][]byte{}
	for i, n := range []int{directWrite - 1, directWrite, directWrite + 5, 512<<10 + 3, 1<<20 - 1024, 700 << 10} {
		b := bytes.Repeat([]byte{byte(i + 1), byte(n)}, n/2+1)[:n]
		lsn, err := l.AppendBuffered(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		want[lsn] = b
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkReplay(t, fs, want)
}
