package gateway

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
)

// openNotifications opens the queue of events sent out to webhooks and
// starts its senders when notifications.webhooks is set; without it the
// services get no sink (nil) and publish nothing.
func openNotifications(ctx context.Context, cfg *config.Config, u config.StoreURL, gatewayID string, md meta.Store,
	metrics *prometheus.Registry, logger *slog.Logger) (*notify.Queue, notify.Sink, error) {
	nc := cfg.Notifications
	if len(nc.Webhooks) == 0 {
		return nil, nil, nil
	}
	hooks := make([]notify.Webhook, len(nc.Webhooks))
	for i, w := range nc.Webhooks {
		hooks[i] = notify.Webhook{URL: w.URL, Token: w.Token, Headers: w.Headers, Kinds: w.Kinds}
	}
	q, err := notify.Open(ctx, md, notify.Options{Webhooks: hooks, Gateway: gatewayID, Bucket: u.Bucket, Prefix: u.Prefix,
		MaxQueued: nc.MaxQueued, KeepDelivered: nc.KeepDelivered, BaseDelay: nc.Retry.BaseDelay, MaxDelay: nc.Retry.MaxDelay,
		MaxAttempts: nc.Retry.MaxAttempts, Timeout: nc.Timeout, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	q.Start()
	metrics.MustRegister(notifyCollector{q})
	return q, q, nil
}

// notifyCollector exports the event queue's figures.
type notifyCollector struct{ q *notify.Queue }

var (
	descNotifyQueued   = prometheus.NewDesc("gatewayd_notify_events_queued_total", "Events queued for the webhooks, by kind.", []string{"kind"}, nil)
	descNotifySent     = prometheus.NewDesc("gatewayd_notify_events_sent_total", "Events a webhook took (answered 2xx).", nil, nil)
	descNotifyFailures = prometheus.NewDesc("gatewayd_notify_send_failures_total", "Posts of an event to a webhook that failed and are retried.", nil, nil)
	descNotifyDropped  = prometheus.NewDesc("gatewayd_notify_events_dropped_total", "Events given up after notifications.retry.max_attempts, or failed uploads' events not queued while the queue was full.", nil, nil)
	descNotifyDepth    = prometheus.NewDesc("gatewayd_notify_queue_depth", "Events the slowest webhook has yet to take.", nil, nil)
)

func (c notifyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotifyQueued, descNotifySent, descNotifyFailures, descNotifyDropped, descNotifyDepth} {
		ch <- d
	}
}

func (c notifyCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.q.Stats()
	for k, n := range st.Queued {
		ch <- prometheus.MustNewConstMetric(descNotifyQueued, prometheus.CounterValue, float64(n), string(k))
	}
	ch <- prometheus.MustNewConstMetric(descNotifySent, prometheus.CounterValue, float64(st.Sent))
	ch <- prometheus.MustNewConstMetric(descNotifyFailures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(descNotifyDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descNotifyDepth, prometheus.GaugeValue, float64(st.Depth))
}
