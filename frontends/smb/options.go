package smb

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/gatewayd/gatewayd/fileshare"
)

// Protocol is the SMB frontend's name among a share's protocols and the
// key of its options in the share's configuration.
const Protocol = "smb"

// ShareOptions are a share's SMB options, kept by the file share service
// as this frontend's options (fileshare.Config.Frontends["smb"]) and
// stored as this JSON object.
type ShareOptions struct {
	Guest   bool `json:"guest,omitempty"`   // guest access (off by default)
	Encrypt bool `json:"encrypt,omitempty"` // require SMB3 encryption
	// KernelOplocks serves the share with kernel oplocks, as a share
	// served over NFS too always is: a change in the bucket then breaks
	// an SMB client's oplock, at the price of no SMB2 leases and durable
	// handles on the share (leases.go, docs/smb.md).
	KernelOplocks bool `json:"kernel_oplocks,omitempty"`
	Access             // who may use the share, its lists stored beside these
}

// ReadShareOptions reads a share's SMB options: none for a share without them; an
// error for options this frontend does not know (a misspelt option would
// otherwise leave a share open to everyone).
func ReadShareOptions(c fileshare.Config) (ShareOptions, error) {
	var o ShareOptions
	raw, ok := c.Frontends[Protocol]
	if !ok {
		return o, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return ShareOptions{}, fmt.Errorf("%w: share %s: SMB options: %v", ErrBadAccess, c.Name, err)
	}
	return o, nil
}

// SetShareOptions stores o as c's SMB options; options all at their defaults
// are no options.
func SetShareOptions(c *fileshare.Config, o ShareOptions) error {
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if string(raw) == "{}" {
		delete(c.Frontends, Protocol)
		return nil
	}
	if c.Frontends == nil {
		c.Frontends = map[string]json.RawMessage{}
	}
	c.Frontends[Protocol] = raw
	return nil
}

// CheckShare refuses what smb.conf cannot carry for a share served over
// SMB: a share name or an access list entry that would change its
// structure, or options this frontend does not know.
func CheckShare(c fileshare.Config) error {
	o, err := ReadShareOptions(c)
	if err != nil {
		return err
	}
	if c.Serves(Protocol) {
		if err := CheckShareName(c.Name); err != nil {
			return err
		}
	}
	return o.Access.Check()
}
