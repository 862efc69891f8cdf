// Command gotgtpeer serves gotgt v0.2.2 with an in-memory LUN, the peer
// gatewayd's iSCSI benchmark compares against. It is a separate module so
// gotgt never becomes a dependency of gatewayd itself.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/gostor/gotgt/pkg/api"
	"github.com/gostor/gotgt/pkg/config"
	_ "github.com/gostor/gotgt/pkg/port/iscsit"
	"github.com/gostor/gotgt/pkg/scsi"
	_ "github.com/gostor/gotgt/pkg/scsi/backingstore"
)

// memStore is a gotgt backing store in memory; its path is the size in bytes.
type memStore struct {
	scsi.BaseBackingStore
	mu  sync.RWMutex
	buf []byte
}

func (m *memStore) Open(_ *api.SCSILu, path string) error {
	n, err := strconv.ParseInt(path, 10, 64)
	if err != nil {
		return err
	}
	m.buf = make([]byte, n)
	m.DataSize = uint64(n)
	return nil
}
func (m *memStore) Close(*api.SCSILu) error                { return nil }
func (m *memStore) Init(*api.SCSILu, string) error         { return nil }
func (m *memStore) Exit(*api.SCSILu) error                 { return nil }
func (m *memStore) Size(*api.SCSILu) uint64                { return uint64(len(m.buf)) }
func (m *memStore) DataSync(int64, int64) error            { return nil }
func (m *memStore) DataAdvise(int64, int64, uint32) error  { return nil }
func (m *memStore) Unmap([]api.UnmapBlockDescriptor) error { return nil }

func (m *memStore) Read(off, n int64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off < 0 || off+n > int64(len(m.buf)) {
		return nil, fmt.Errorf("read beyond the end")
	}
	out := make([]byte, n)
	copy(out, m.buf[off:])
	return out, nil
}

func (m *memStore) Write(p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.buf)) {
		return fmt.Errorf("write beyond the end")
	}
	copy(m.buf[off:], p)
	return nil
}

func main() {
	port := flag.Int("port", 3262, "TCP port to listen on (all addresses: gotgt has no bind option)")
	size := flag.Int64("size", 1<<30, "LUN size in bytes")
	name := flag.String("iqn", "iqn.2024-01.io.gatewayd:gotgt", "target name")
	flag.Parse()

	scsi.EnableORWrite16 = false // ORWRITE(16) crashes gotgt v0.2.2
	scsi.RegisterBackingStore("mem", func() (api.BackingStore, error) {
		return &memStore{BaseBackingStore: scsi.BaseBackingStore{Name: "mem"}}, nil
	})
	cfg := &config.Config{
		Storages:     []config.BackendStorage{{DeviceID: 1000, Path: "mem:" + strconv.FormatInt(*size, 10), Online: true}},
		ISCSIPortals: []config.ISCSIPortalInfo{{ID: 0, Portal: "127.0.0.1:" + strconv.Itoa(*port)}},
		ISCSITargets: map[string]config.ISCSITarget{*name: {TPGTs: map[string][]uint64{"1": {0}}, LUNs: map[string]uint64{"1": 1000}}},
	}
	if err := scsi.InitSCSILUMap(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "gotgtpeer:", err)
		os.Exit(1)
	}
	driver, err := scsi.NewTargetDriver("iscsi", scsi.NewSCSITargetService())
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotgtpeer:", err)
		os.Exit(1)
	}
	if err := driver.NewTarget(*name, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "gotgtpeer:", err)
		os.Exit(1)
	}
	fmt.Printf("iscsi://127.0.0.1:%d/%s/1\n", *port, *name)
	if err := driver.Run(*port); err != nil {
		fmt.Fprintln(os.Stderr, "gotgtpeer:", err)
		os.Exit(1)
	}
}
