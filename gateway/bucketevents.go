package gateway

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/bucketevents"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/fileshare"
)

// startBucketEvents starts the receiver of the bucket's event
// notifications when shares.bucket_events.listen or its sqs.queue_url is
// set (nil otherwise), polling the queue when one is.
func startBucketEvents(ctx context.Context, cfg *config.Config, u config.StoreURL, shares *fileshare.Manager, metrics *prometheus.Registry, logger *slog.Logger) (*bucketevents.Receiver, error) {
	ec := cfg.Shares.Events
	if ec.Listen == "" && ec.SQS.QueueURL == "" {
		return nil, nil
	}
	r, err := bucketevents.New(bucketevents.Options{Listen: ec.Listen, Token: ec.Token, Bucket: u.Bucket, Prefix: u.Prefix,
		QueueSize: ec.QueueSize, Log: logger}, shares)
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	if q := ec.SQS; q.QueueURL != "" {
		region := q.Region
		if region == "" {
			region = cfg.Store.S3.Region
		}
		if err := r.PollSQS(ctx, bucketevents.SQSOptions{QueueURL: q.QueueURL, Region: region, Endpoint: q.Endpoint,
			AccessKey: q.AccessKey, SecretKey: q.SecretKey}); err != nil {
			r.Close()
			return nil, err
		}
	}
	metrics.MustRegister(bucketEventsCollector{r, ec.SQS.QueueURL != ""})
	return r, nil
}

// bucketEventsCollector exports the receiver's figures, and its SQS
// poller's when sqs.
type bucketEventsCollector struct {
	r   *bucketevents.Receiver
	sqs bool
}

var (
	descEventsReceived     = prometheus.NewDesc("gatewayd_bucket_events_received_total", "Object change records received from the bucket's notifications.", nil, nil)
	descEventsApplied      = prometheus.NewDesc("gatewayd_bucket_events_applied_total", "Object changes applied to the shares, by outcome (applied, own, local_wins, no_share, bad_key).", []string{"outcome"}, nil)
	descEventsUnauthorized = prometheus.NewDesc("gatewayd_bucket_events_unauthorized_total", "Requests to the bucket event receiver refused for their token.", nil, nil)
	descEventsOverflows    = prometheus.NewDesc("gatewayd_bucket_events_overflows_total", "Times the bucket event queue overflowed and every share read the store again.", nil, nil)
	descEventsQueued       = prometheus.NewDesc("gatewayd_bucket_events_queued", "Object changes waiting to be applied.", nil, nil)

	descSQSReceived = prometheus.NewDesc("gatewayd_bucket_events_sqs_received_total", "Messages received from the SQS queue (again each time one comes back).", nil, nil)
	descSQSApplied  = prometheus.NewDesc("gatewayd_bucket_events_sqs_applied_total", "Messages from the SQS queue whose changes were all applied.", nil, nil)
	descSQSDeleted  = prometheus.NewDesc("gatewayd_bucket_events_sqs_deleted_total", "Messages deleted from the SQS queue.", nil, nil)
	descSQSFailed   = prometheus.NewDesc("gatewayd_bucket_events_sqs_failed_total", "Messages from the SQS queue that were no JSON, deleted without a change.", nil, nil)
	descSQSErrors   = prometheus.NewDesc("gatewayd_bucket_events_sqs_errors_total", "Failed calls to the SQS queue (retried) and messages it refused to delete, by operation (receive, delete).", []string{"op"}, nil)
	descSQSLag      = prometheus.NewDesc("gatewayd_bucket_events_sqs_lag_seconds", "Age, when received, of the oldest message of the last batch received from the SQS queue.", nil, nil)
)

func (c bucketEventsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEventsReceived, descEventsApplied, descEventsUnauthorized, descEventsOverflows, descEventsQueued, descSQSReceived, descSQSApplied, descSQSDeleted, descSQSFailed, descSQSErrors, descSQSLag} {
		ch <- d
	}
}

func (c bucketEventsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(descEventsReceived, prometheus.CounterValue, float64(st.Received))
	for o, n := range st.Outcomes {
		ch <- prometheus.MustNewConstMetric(descEventsApplied, prometheus.CounterValue, float64(n), o)
	}
	ch <- prometheus.MustNewConstMetric(descEventsUnauthorized, prometheus.CounterValue, float64(st.Unauthorized))
	ch <- prometheus.MustNewConstMetric(descEventsOverflows, prometheus.CounterValue, float64(st.Overflows))
	ch <- prometheus.MustNewConstMetric(descEventsQueued, prometheus.GaugeValue, float64(st.Queued))
	if !c.sqs {
		return
	}
	q := c.r.SQSStats()
	ch <- prometheus.MustNewConstMetric(descSQSReceived, prometheus.CounterValue, float64(q.Messages))
	ch <- prometheus.MustNewConstMetric(descSQSApplied, prometheus.CounterValue, float64(q.Applied))
	ch <- prometheus.MustNewConstMetric(descSQSDeleted, prometheus.CounterValue, float64(q.Deleted))
	ch <- prometheus.MustNewConstMetric(descSQSFailed, prometheus.CounterValue, float64(q.Failed))
	ch <- prometheus.MustNewConstMetric(descSQSErrors, prometheus.CounterValue, float64(q.ReceiveErrors), "receive")
	ch <- prometheus.MustNewConstMetric(descSQSErrors, prometheus.CounterValue, float64(q.DeleteErrors), "delete")
	ch <- prometheus.MustNewConstMetric(descSQSLag, prometheus.GaugeValue, q.Lag.Seconds())
}
