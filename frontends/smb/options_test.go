package smb

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/gatewayd/gatewayd/fileshare"
)

// TestShareOptions: a share's SMB options go into its configuration as
// this frontend's JSON object and come back the same; defaults are no
// options; an option this frontend does not know, or an access entry
// smb.conf cannot carry, is refused.
func TestShareOptions(t *testing.T) {
	c := fileshare.Config{Name: "docs", Protocols: []string{"nfs", "smb"}}
	want := ShareOptions{Encrypt: true, Access: Access{ValidUsers: []string{`DOM\alice`, "@staff"}, AccessBasedEnum: true}}
	if err := SetShareOptions(&c, want); err != nil {
		t.Fatal(err)
	}
	if got := string(c.Frontends[Protocol]); got != `{"encrypt":true,"valid_users":["DOM\\alice","@staff"],"access_based_enum":true}` {
		t.Fatalf("stored as %s", got)
	}
	got, err := ReadShareOptions(c)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if err := CheckShare(c); err != nil {
		t.Fatal(err)
	}
	if err := SetShareOptions(&c, ShareOptions{}); err != nil || len(c.Frontends) != 0 {
		t.Fatalf("default options kept: %v, %v", c.Frontends, err)
	}
	if got, err := ReadShareOptions(c); err != nil || !reflect.DeepEqual(got, ShareOptions{}) {
		t.Fatalf("no options read as %+v, %v", got, err)
	}
	c.Frontends = map[string]json.RawMessage{Protocol: json.RawMessage(`{"valid_user":["alice"]}`)}
	if _, err := ReadShareOptions(c); !errors.Is(err, ErrBadAccess) {
		t.Fatalf("a misspelt option: %v", err)
	}
	if err := CheckShare(c); !errors.Is(err, ErrBadAccess) {
		t.Fatalf("a misspelt option passed the check: %v", err)
	}
	if err := SetShareOptions(&c, ShareOptions{Access: Access{AdminUsers: []string{"a,b"}}}); err != nil {
		t.Fatal(err)
	}
	if err := CheckShare(c); !errors.Is(err, ErrBadAccess) {
		t.Fatalf("an entry smb.conf cannot carry: %v", err)
	}
	if err := CheckShare(fileshare.Config{Name: "homes", Protocols: []string{"smb"}}); err == nil {
		t.Fatal("a share name Samba reserves passed")
	}
}
