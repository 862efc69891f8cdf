package badger

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/gatewayd/gatewayd/meta"
)

// The child half of TestCommittedUpdatesSurviveKill: commit keys one by one,
// printing each number once Update (UpdateUnsynced with
// GATEWAYD_META_CRASH_UNSYNCED set) has returned, until killed.
func init() {
	dir := os.Getenv("GATEWAYD_META_CRASH_CHILD")
	if dir == "" {
		return
	}
	s, err := Open(dir, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	update := s.Update
	if os.Getenv("GATEWAYD_META_CRASH_UNSYNCED") != "" {
		update = s.UpdateUnsynced
	}
	for i := 0; ; i++ {
		err := update(context.Background(), func(tx meta.Txn) error {
			return tx.Set([]byte(fmt.Sprintf("k/%08d", i)), []byte(strconv.Itoa(i)))
		})
		if err != nil {
			fmt.Println("update:", err)
			os.Exit(2)
		}
		fmt.Println(i)
	}
}

// An Update that returned is durable: kill -9 the writer at an arbitrary
// point and every acknowledged key is there on reopen.
func TestCommittedUpdatesSurviveKill(t *testing.T) { killWriter(t, false) }

// So is an UpdateUnsynced that returned: its commit is in badger's
// memory-mapped files, which a killed process does not lose.
func TestUnsyncedUpdatesSurviveKill(t *testing.T) { killWriter(t, true) }

func killWriter(t *testing.T, unsynced bool) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "GATEWAYD_META_CRASH_CHILD="+dir)
	if unsynced {
		cmd.Env = append(cmd.Env, "GATEWAYD_META_CRASH_UNSYNCED=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := -1
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("child: %s", sc.Text())
		}
		acked = n
		if acked == 300 {
			_ = cmd.Process.Kill() // SIGKILL mid-stream
			break
		}
	}
	_ = cmd.Wait()
	if acked < 300 {
		t.Fatalf("child acknowledged only %d updates", acked)
	}

	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(context.Background(), func(tx meta.Txn) error {
		for i := 0; i <= acked; i++ {
			if _, err := tx.Get([]byte(fmt.Sprintf("k/%08d", i))); err != nil {
				return fmt.Errorf("acknowledged key %d lost after kill: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
