// Package s3 is the object store on AWS S3 or any S3-compatible server
// (MinIO, Ceph RGW), through aws-sdk-go-v2.
//
// The SDK's own retries are off: a Store makes one attempt per call and
// classifies every error with errkind (NotFound, Retryable, Permanent), so
// that the retry decorator (objstore/retry) is the one retry policy. Large
// objects go up as multipart uploads with parts sent in parallel; copies
// and storage-class changes are server-side.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// Defaults and S3's limits.
const (
	DefaultPartSize           = 16 << 20
	MinPartSize               = 5 << 20
	DefaultMultipartThreshold = 64 << 20
	DefaultListPageSize       = 1000
	DefaultPartConcurrency    = 4
	DefaultRegion             = "us-east-1"

	maxParts       = 10000
	maxPutSize     = 5 << 30 // largest single PutObject or CopyObject
	copyPartSize   = 512 << 20
	openTimeout    = 10 * time.Second
	cleanupTimeout = 30 * time.Second
)

// Config says where the store is and how to talk to it.
type Config struct {
	Bucket string
	// Prefix is prepended to every key ("gw1" stores "config" as
	// "gw1/config"); a trailing "/" is added if missing.
	Prefix string
	// Endpoint is the server's URL ("http://127.0.0.1:9000"); empty means
	// AWS S3. Without a scheme, https is assumed.
	Endpoint string
	// Region; empty means the SDK's default resolution, then us-east-1.
	Region string
	// PathStyle addresses buckets as ENDPOINT/BUCKET rather than as
	// BUCKET.ENDPOINT; most S3-compatible servers need it.
	PathStyle bool
	// Credentials; an empty AccessKeyID means the SDK's default chain
	// (environment, shared files, instance role).
	AccessKeyID, SecretAccessKey, SessionToken string
	// StorageClass for new objects (and copies); empty means the bucket's
	// default, STANDARD.
	StorageClass string
	// PartSize of multipart uploads: default 16 MiB, at least 5 MiB. It
	// grows when an object would need more than 10000 parts.
	PartSize int64
	// MultipartThreshold: objects larger than this go up in parts
	// (default 64 MiB, at most 5 GiB).
	MultipartThreshold int64
	// PartConcurrency is how many parts of one upload are in flight
	// (default 4). Each may hold a part-sized buffer.
	PartConcurrency int
	// ListPageSize is the number of keys per list request (default 1000).
	ListPageSize int32
}

// Store is an S3 bucket (under a prefix) as an object store. It is safe for
// concurrent use.
type Store struct {
	client   *awss3.Client
	cfg      Config
	prefix   string
	endpoint string // for messages
	log      *slog.Logger

	// Copies larger than copyThreshold are done in parts of copyPartSize;
	// tests lower both.
	copyThreshold int64
	copyPartSize  int64
}

var (
	_ objstore.Copier         = (*Store)(nil)
	_ objstore.StorageClasser = (*Store)(nil)
	_ objstore.MetadataPutter = (*Store)(nil)
	_ objstore.DirLister      = (*Store)(nil)
)

// Open connects to the bucket and checks that it is there and usable. Its
// errors are one line that says what is wrong: the bucket is missing,
// access is denied, or the endpoint cannot be reached.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Bucket == "" {
		return nil, errkind.Mark(errkind.Permanent, errors.New("s3: no bucket configured"))
	}
	if cfg.AccessKeyID != "" && cfg.SecretAccessKey == "" {
		return nil, errkind.Mark(errkind.Permanent, errors.New("s3: an access key id without a secret access key"))
	}
	if cfg.Endpoint != "" && !strings.Contains(cfg.Endpoint, "://") {
		cfg.Endpoint = "https://" + cfg.Endpoint
	}
	cfg.Endpoint = strings.TrimSuffix(cfg.Endpoint, "/")
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize {
		return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("s3: part size %d is below S3's minimum of %d", cfg.PartSize, MinPartSize))
	}
	if cfg.MultipartThreshold == 0 {
		cfg.MultipartThreshold = DefaultMultipartThreshold
	}
	cfg.MultipartThreshold = min(cfg.MultipartThreshold, maxPutSize)
	if cfg.PartConcurrency <= 0 {
		cfg.PartConcurrency = DefaultPartConcurrency
	}
	if cfg.ListPageSize <= 0 {
		cfg.ListPageSize = DefaultListPageSize
	}
	cfg.Prefix = strings.TrimPrefix(cfg.Prefix, "/")
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}

	opts := []func(*config.LoadOptions) error{
		// One attempt per call: objstore/retry owns the retry policy.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithHTTPClient(awshttp.NewBuildableClient()),
		// The SDK's own log lines (IMDS fallbacks, ...) go to our logger,
		// not to stderr beside the one-line errors.
		config.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			log.Debug(fmt.Sprintf(format, v...), "component", "aws-sdk", "class", string(c))
		})),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("s3: load configuration: %w", err))
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}
	if cfg.AccessKeyID == "" {
		// Resolve the default chain now, so a machine without credentials
		// gets that said rather than an access-denied from somewhere else.
		cctx, cancel := context.WithTimeout(ctx, openTimeout)
		_, err := awsCfg.Credentials.Retrieve(cctx)
		cancel()
		if err != nil {
			return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("s3: no credentials found: set the access key and secret key (store.s3.access_key_id and secret_access_key, or --s3-access-key and --s3-secret-key) or configure the AWS credential chain (environment, shared config, instance role)"))
		}
	}
	client := awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Ranged and multipart reads carry no whole-object checksum to
		// check; that is expected, not worth a log line per read.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	s := &Store{
		client:        client,
		cfg:           cfg,
		prefix:        cfg.Prefix,
		endpoint:      cfg.Endpoint,
		log:           log.With("store", "s3://"+cfg.Bucket+"/"+cfg.Prefix),
		copyThreshold: maxPutSize,
		copyPartSize:  copyPartSize,
	}
	if s.endpoint == "" {
		s.endpoint = "AWS S3 (" + awsCfg.Region + ")"
	}
	if err := s.checkBucket(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) String() string { return "s3://" + s.cfg.Bucket + "/" + s.prefix }

// checkBucket turns HeadBucket's answer into one clear line.
func (s *Store) checkBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	var err error
	// A server that answers but is briefly unwell (503 SlowDown, 500, a
	// connection reset mid-answer) is asked again within openTimeout: one
	// such answer must not stop a gateway from starting after a crash.
	// An endpoint that does not answer at all still fails at once.
	for delay := openRetryDelay; ; delay *= 2 {
		_, err = s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)})
		if err == nil {
			return nil
		}
		if status := httpStatus(err); status < 500 && !isConnReset(err) {
			break
		}
		if !sleepCtx(ctx, delay) {
			break
		}
	}
	var sendErr *smithyhttp.RequestSendError
	switch status := httpStatus(err); {
	case status == http.StatusNotFound:
		return errkind.Mark(errkind.Permanent, fmt.Errorf("s3: bucket %s does not exist at %s", s.cfg.Bucket, s.endpoint))
	case status == http.StatusForbidden:
		return errkind.Mark(errkind.Permanent, fmt.Errorf("s3: access denied to bucket %s at %s: check the access key, secret key and bucket policy", s.cfg.Bucket, s.endpoint))
	case status == http.StatusMovedPermanently || (status == http.StatusBadRequest && s.cfg.Endpoint == ""):
		return errkind.Mark(errkind.Permanent, fmt.Errorf("s3: bucket %s at %s is in another region than %s (HTTP %d)", s.cfg.Bucket, s.endpoint, s.client.Options().Region, status))
	case status != 0:
		return classifyStatus(err, fmt.Errorf("s3: bucket %s at %s: HTTP %d: %w", s.cfg.Bucket, s.endpoint, status, err))
	case errors.As(err, &sendErr), isNetworkError(err):
		return errkind.Mark(errkind.Retryable, fmt.Errorf("s3: cannot reach S3 endpoint %s: %s", s.endpoint, networkCause(err)))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return errkind.Mark(errkind.Retryable, fmt.Errorf("s3: cannot reach S3 endpoint %s: no answer within %v", s.endpoint, openTimeout))
	}
	return errkind.Mark(errkind.Permanent, fmt.Errorf("s3: cannot use bucket %s at %s: %w", s.cfg.Bucket, s.endpoint, err))
}

// openRetryDelay is the first pause before asking an unwell server again.
var openRetryDelay = 100 * time.Millisecond

// isConnReset says whether a connection that was open broke: the server
// was reached, so the failure is its passing trouble, not a wrong address.
func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// sleepCtx waits d, or less if ctx ends first (then false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// networkCause is the innermost useful part of a transport error, without
// the SDK's layers of operation names.
func networkCause(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %v", openTimeout)
	}
	return err.Error()
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.HTTPStatusCode()
	}
	return 0
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Error codes that mean "try again later" whatever their HTTP status.
var retryableCodes = map[string]bool{
	"RequestTimeout":             true,
	"SlowDown":                   true,
	"Throttling":                 true,
	"ThrottlingException":        true,
	"RequestThrottled":           true,
	"InternalError":              true,
	"ServiceUnavailable":         true,
	"OperationAborted":           true,
	"XMinioServerNotInitialized": true,
}

// Error codes of a 404 that are not about the key.
var notKeyCodes = map[string]bool{"NoSuchBucket": true, "NoSuchUpload": true}

var sdkRetryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// classify wraps err from operation op on key and marks it: NotFound for a
// missing key, Retryable for what may pass (5xx, throttling, timeouts,
// broken connections, truncated bodies), Permanent for the rest. An error
// caused by ctx ending is left unmarked: the caller gave up.
func (s *Store) classify(ctx context.Context, op, key string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %s %s: %w", s, op, key, err)
	}
	if httpStatus(err) == http.StatusNotFound && !notKeyCodes[apiCode(err)] {
		return objstore.NotFound(s, key)
	}
	wrapped := fmt.Errorf("%s: %s %s: %w", s, op, key, err)
	if errkind.Of(err) != errkind.Unknown {
		return wrapped // classified below us (a reader's own error)
	}
	return classifyStatus(err, wrapped)
}

func classifyStatus(err, wrapped error) error {
	status := httpStatus(err)
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
		retryableCodes[apiCode(err)],
		sdkRetryables.IsErrorRetryable(err) == aws.TrueTernary,
		// A 2xx whose body broke (a listing cut short fails to decode
		// after its 200) is a transfer failure too.
		status < 300 && isNetworkError(err):
		return errkind.Mark(errkind.Retryable, wrapped)
	}
	return errkind.Mark(errkind.Permanent, wrapped)
}

// isNetworkError reports transport failures: the request may not have
// reached the server, or its answer did not come back whole.
func isNetworkError(err error) bool {
	var netErr net.Error
	var sendErr *smithyhttp.RequestSendError
	return errors.As(err, &sendErr) ||
		(errors.As(err, &netErr) && netErr.Timeout()) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE)
}

func (s *Store) fullKey(key string) *string { return aws.String(s.prefix + key) }

func normalizeClass(class string) string {
	if class == "STANDARD" {
		return ""
	}
	return class
}

func trimETag(etag *string) string { return strings.Trim(aws.ToString(etag), `"`) }
