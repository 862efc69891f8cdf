package config

import (
	"strings"
	"testing"
)

// The notifications section: webhooks parsed, bad ones refused by name,
// secrets redacted.
func TestNotifications(t *testing.T) {
	cfg := Default("/d")
	err := Parse([]byte(`notifications:
  webhooks:
    - url: https://hooks.example.com/gw
      token: s3cret
      headers: {X-Key: k3y}
      kinds: [file.uploaded, tape.*]
  retry: {max_attempts: 5}
`), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Notifications
	if len(n.Webhooks) != 1 || n.Webhooks[0].Token != "s3cret" || n.Webhooks[0].Headers["X-Key"] != "k3y" || len(n.Webhooks[0].Kinds) != 2 ||
		n.Retry.MaxAttempts != 5 || n.Retry.BaseDelay == 0 || n.MaxQueued != 100_000 {
		t.Fatalf("parsed %+v", n)
	}
	b, err := Marshal(cfg.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cret") || strings.Contains(string(b), "k3y") || cfg.Notifications.Webhooks[0].Token != "s3cret" {
		t.Fatalf("redacted config shows a secret, or redaction changed the config:\n%s", b)
	}
	for name, text := range map[string]string{
		"no scheme":  "notifications:\n  webhooks:\n    - url: hooks.example.com\n",
		"bad kind":   "notifications:\n  webhooks:\n    - url: http://h/\n      kinds: [file.created]\n",
		"twice":      "notifications:\n  webhooks:\n    - url: http://h/\n    - url: http://h/\n",
		"no queue":   "notifications:\n  max_queued: 0\n",
		"bad delays": "notifications:\n  retry: {base_delay: 10s, max_delay: 1s}\n",
		"unknown":    "notifications:\n  webhooks:\n    - uri: http://h/\n",
	} {
		err := Parse([]byte(text), Default("/d"))
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		} else if name != "unknown" && !strings.Contains(err.Error(), "notifications.") {
			t.Errorf("%s: error names no option: %v", name, err)
		}
	}
}
