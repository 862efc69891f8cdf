package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/gatewayd/gatewayd/notify"
)

// Notifications configures the events the gateway sends out to webhooks
// (docs/events.md): files uploaded, uploads failing, files deleted,
// volumes' recovery points and snapshots, tapes archived and retrieved.
// Off while Webhooks is empty.
type Notifications struct {
	Webhooks []Webhook `yaml:"webhooks"`
	// MaxQueued is how many events may wait for a webhook (default
	// 100000); at that many, file uploads wait.
	MaxQueued int `yaml:"max_queued"`
	// KeepDelivered is how many delivered events are remembered, so that
	// one published again after a crash is not sent twice (default 100000).
	KeepDelivered int `yaml:"keep_delivered"`
	// Retry is the backoff between posts of an event a webhook did not
	// take; max_attempts 0 (the default) retries for ever.
	Retry   NotifyRetry   `yaml:"retry"`
	Timeout time.Duration `yaml:"timeout"` // of one request (default 30s)
}

// Webhook is one receiver of events.
type Webhook struct {
	URL     string            `yaml:"url"`
	Token   string            `yaml:"token"`   // sent as Authorization: Bearer TOKEN
	Headers map[string]string `yaml:"headers"` // set on every request
	// Kinds are the event kinds sent ("file.uploaded", or "file.*");
	// empty: all.
	Kinds []string `yaml:"kinds"`
}

// NotifyRetry is the webhook senders' backoff.
type NotifyRetry struct {
	BaseDelay   time.Duration `yaml:"base_delay"`
	MaxDelay    time.Duration `yaml:"max_delay"`
	MaxAttempts int           `yaml:"max_attempts"`
}

func defaultNotifications() Notifications {
	return Notifications{MaxQueued: 100_000, KeepDelivered: 100_000, Timeout: 30 * time.Second,
		Retry: NotifyRetry{BaseDelay: time.Second, MaxDelay: 5 * time.Minute}}
}

func (n Notifications) validate() error {
	seen := map[string]bool{}
	for i, w := range n.Webhooks {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("notifications.webhooks[%d].url: %q is not an http:// or https:// URL", i, w.URL)
		}
		if seen[w.URL] {
			return fmt.Errorf("notifications.webhooks[%d].url: %s is configured twice", i, w.URL)
		}
		seen[w.URL] = true
		if err := notify.ValidKinds(w.Kinds); err != nil {
			return fmt.Errorf("notifications.webhooks[%d].kinds: %w", i, err)
		}
	}
	if n.MaxQueued < 1 || n.KeepDelivered < 1 {
		return errors.New("notifications.max_queued and keep_delivered: must be at least 1")
	}
	if n.Retry.BaseDelay <= 0 || n.Retry.MaxDelay < n.Retry.BaseDelay || n.Retry.MaxAttempts < 0 {
		return fmt.Errorf("notifications.retry: need 0 < base_delay <= max_delay and max_attempts >= 0, got %v, %v and %d",
			n.Retry.BaseDelay, n.Retry.MaxDelay, n.Retry.MaxAttempts)
	}
	if n.Timeout <= 0 {
		return errors.New("notifications.timeout: must be positive")
	}
	return nil
}

// redact hides the webhooks' tokens and header values.
func (n Notifications) redact() Notifications {
	hooks := make([]Webhook, len(n.Webhooks))
	for i, w := range n.Webhooks {
		if w.Token != "" {
			w.Token = "REDACTED"
		}
		if len(w.Headers) > 0 {
			h := map[string]string{}
			for k := range w.Headers {
				h[k] = "REDACTED"
			}
			w.Headers = h
		}
		hooks[i] = w
	}
	n.Webhooks = hooks
	return n
}
