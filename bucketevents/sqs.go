package bucketevents

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// The SQS poller takes the bucket's notifications from an SQS queue (or
// an SQS-compatible server): what AWS delivers there, from S3's event
// notifications, from EventBridge rules or through SNS. It long-polls the
// queue, queues each message's changes like the webhook's, and deletes
// the messages of a batch once their changes are applied: a message of a
// gateway that stops or dies first comes back after the queue's
// visibility timeout and is applied then. A message that is no event
// (S3's test event, another service's) is deleted and counted as
// ignored; one that is not JSON is deleted and logged.

// SQSOptions say which queue to poll and how.
type SQSOptions struct {
	QueueURL string
	Region   string // default us-east-1
	// Endpoint is an SQS-compatible server's URL; empty is AWS's for the
	// region.
	Endpoint string
	// AccessKey and SecretKey sign the requests; empty takes the SDK's
	// default chain (environment, shared files, instance role).
	AccessKey, SecretKey string
	// WaitTime is the long poll's wait (default and at most 20 s).
	WaitTime time.Duration
	// Credentials, when set, is used instead of AccessKey and SecretKey
	// and of the default chain.
	Credentials aws.CredentialsProvider
}

// SQSStats are the figures of a receiver's pollers.
type SQSStats struct {
	Messages uint64 // messages received (again each time one comes back)
	Applied  uint64 // messages whose changes were all applied
	Deleted  uint64 // messages deleted from the queue
	// Failed are messages that were no JSON: deleted without a change.
	Failed uint64
	// ReceiveErrors and DeleteErrors are failed calls (retried) and
	// messages the queue refused to delete (they come back).
	ReceiveErrors, DeleteErrors uint64
	// Lag is the age, when received, of the oldest message of the last
	// batch received: how far the gateway trails the queue.
	Lag time.Duration
}

// sqsPoller is one queue polled.
type sqsPoller struct {
	r      *Receiver
	client *sqs.Client
	opts   SQSOptions

	messages, applied, deleted, failed, receiveErrs, deleteErrs atomic.Uint64
	lag                                                         atomic.Int64 // nanoseconds
}

// PollSQS polls the queue until Close; the receiver is started first.
// ctx bounds the loading of the SDK's default configuration.
func (r *Receiver) PollSQS(ctx context.Context, o SQSOptions) error {
	if o.QueueURL == "" {
		return errors.New("bucket events: sqs: no queue URL")
	}
	if r.ctx == nil {
		return errors.New("bucket events: sqs: the receiver is not started")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.WaitTime <= 0 || o.WaitTime > 20*time.Second {
		o.WaitTime = 20 * time.Second
	}
	cfg := aws.Config{Region: o.Region, Credentials: o.Credentials}
	if cfg.Credentials == nil && o.AccessKey != "" {
		cfg.Credentials = credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")
	}
	if cfg.Credentials == nil {
		loaded, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(o.Region))
		if err != nil {
			return fmt.Errorf("bucket events: sqs: %w", err)
		}
		cfg = loaded
	}
	p := &sqsPoller{r: r, opts: o, client: sqs.NewFromConfig(cfg, func(so *sqs.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
	})}
	r.mu.Lock()
	r.pollers = append(r.pollers, p)
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		p.run(r.ctx)
	}()
	r.log.Info("bucket events: polling SQS", "queue", o.QueueURL)
	return nil
}

// run receives, applies and deletes batches until ctx ends; a failed
// receive or delete is retried after a pause growing to a minute.
func (p *sqsPoller) run(ctx context.Context) {
	backoff := time.Second
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
	for ctx.Err() == nil {
		out, err := p.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(p.opts.QueueURL), MaxNumberOfMessages: 10,
			WaitTimeSeconds:             int32(p.opts.WaitTime / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameSentTimestamp},
		})
		if err != nil {
			if ctx.Err() == nil {
				p.r.log.Warn("bucket events: sqs: receive failed; retrying", "queue", p.opts.QueueURL, "err", err)
				p.receiveErrs.Add(1)
				pause()
			}
			continue
		}
		if len(out.Messages) == 0 {
			continue
		}
		p.messages.Add(uint64(len(out.Messages)))
		p.lag.Store(int64(oldest(out.Messages, time.Now())))
		var keys []string
		var done []types.DeleteMessageBatchRequestEntry
		taken := uint64(0)
		for i, m := range out.Messages {
			k, err := p.r.take([]byte(aws.ToString(m.Body)))
			if err != nil {
				p.r.log.Warn("bucket events: sqs: a message that is no event, deleted", "queue", p.opts.QueueURL, "id", aws.ToString(m.MessageId), "err", err)
				p.failed.Add(1)
			} else {
				taken++
			}
			keys = append(keys, k...)
			done = append(done, types.DeleteMessageBatchRequestEntry{Id: aws.String(string(rune('a' + i))), ReceiptHandle: m.ReceiptHandle})
		}
		if err := p.r.waitApplied(ctx, keys); err != nil {
			return // stopping: the messages come back after their visibility timeout
		}
		p.applied.Add(taken)
		for ctx.Err() == nil {
			res, err := p.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.opts.QueueURL), Entries: done})
			if err == nil && len(res.Failed) == 0 {
				p.deleted.Add(uint64(len(done)))
				break
			}
			if err == nil { // some were not deleted: they come back and are applied again, which is harmless
				p.deleted.Add(uint64(len(done) - len(res.Failed)))
				p.r.log.Warn("bucket events: sqs: messages not deleted; they will be applied again", "queue", p.opts.QueueURL, "failed", len(res.Failed))
				p.deleteErrs.Add(uint64(len(res.Failed)))
				break
			}
			if ctx.Err() == nil {
				p.r.log.Warn("bucket events: sqs: delete failed; retrying", "queue", p.opts.QueueURL, "err", err)
				p.deleteErrs.Add(1)
				pause()
			}
		}
		backoff = time.Second
	}
}

// SQSStats sums the figures of the receiver's pollers.
func (r *Receiver) SQSStats() SQSStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var st SQSStats
	for _, p := range r.pollers {
		st.Messages += p.messages.Load()
		st.Applied += p.applied.Load()
		st.Deleted += p.deleted.Load()
		st.Failed += p.failed.Load()
		st.ReceiveErrors += p.receiveErrs.Load()
		st.DeleteErrors += p.deleteErrs.Load()
		st.Lag = max(st.Lag, time.Duration(p.lag.Load()))
	}
	return st
}

// oldest is the age at now of the oldest of msgs by the queue's
// SentTimestamp (milliseconds since the epoch); 0 without one.
func oldest(msgs []types.Message, now time.Time) time.Duration {
	var age time.Duration
	for _, m := range msgs {
		ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64)
		if err != nil {
			continue
		}
		age = max(age, now.Sub(time.UnixMilli(ms)))
	}
	return age
}
