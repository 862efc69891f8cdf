package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// partLayout returns the part size for an object of size bytes: at least
// minSize, grown (to whole MiB) when S3's 10000-part limit needs it.
func partLayout(size, minSize int64) (partSize int64, parts int) {
	partSize = minSize
	if (size+partSize-1)/partSize > maxParts {
		partSize = (size + maxParts - 1) / maxParts
		partSize = (partSize + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return partSize, int((size + partSize - 1) / partSize)
}

// partRunner runs part uploads with bounded parallelism and stops them all
// at the first failure.
type partRunner struct {
	ctx    context.Context // cancelled at the first failure
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

func newPartRunner(ctx context.Context, concurrency int) *partRunner {
	ctx, cancel := context.WithCancel(ctx)
	return &partRunner{ctx: ctx, cancel: cancel, sem: make(chan struct{}, concurrency)}
}

// acquire waits for a free slot; false means stop starting parts.
func (p *partRunner) acquire() bool {
	select {
	case p.sem <- struct{}{}:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// run runs fn in the slot taken by acquire.
func (p *partRunner) run(fn func(ctx context.Context) error) {
	p.wg.Go(func() {
		defer func() { <-p.sem }()
		if err := fn(p.ctx); err != nil {
			p.fail(err)
		}
	})
}

func (p *partRunner) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
		p.cancel()
	}
}

func (p *partRunner) wait(parent context.Context) error {
	p.wg.Wait()
	p.cancel()
	if p.err == nil && parent.Err() != nil {
		return parent.Err()
	}
	return p.err
}

// putMultipart uploads size bytes of r from start in parts, several at a
// time. Readers with ReadAt are read in place, concurrently; others are
// read in turn into part buffers. On any failure the upload is aborted, so
// no part lingers and the old object (if any) stays.
func (s *Store) putMultipart(ctx context.Context, key string, r io.ReadSeeker, start, size int64, meta map[string]string, ret objstore.Retention) error {
	partSize, nParts := partLayout(size, s.cfg.PartSize)
	create := &awss3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               s.fullKey(key),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		Metadata:          meta,
	}
	if s.cfg.StorageClass != "" {
		create.StorageClass = types.StorageClass(s.cfg.StorageClass)
	}
	if !ret.IsZero() {
		create.ObjectLockMode, create.ObjectLockRetainUntilDate = types.ObjectLockMode(ret.Mode), aws.Time(ret.Until)
	}
	up, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return s.classify(ctx, "put", key, err)
	}
	uploadID := aws.ToString(up.UploadId)
	s.log.Debug("multipart upload", "key", key, "size", size, "parts", nParts, "part_size", partSize)

	parts := make([]types.CompletedPart, nParts)
	ra, canReadAt := r.(io.ReaderAt)
	var buffers chan []byte
	if !canReadAt {
		buffers = make(chan []byte, s.cfg.PartConcurrency)
		for range s.cfg.PartConcurrency {
			buffers <- nil // allocated on first use
		}
	}
	runner := newPartRunner(ctx, s.cfg.PartConcurrency)
	for i := range nParts {
		if !runner.acquire() {
			break
		}
		off := int64(i) * partSize
		n := min(partSize, size-off)
		var body io.ReadSeeker
		var buf []byte
		if canReadAt {
			body = &window{r: io.NewSectionReader(ra, start+off, n), size: n}
		} else {
			buf = <-buffers
			if int64(cap(buf)) < n {
				buf = make([]byte, partSize)
			}
			buf = buf[:n]
			if _, err := io.ReadFull(r, buf); err != nil {
				buffers <- buf
				<-runner.sem
				runner.fail(errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: read part %d: %w", s, key, i+1, err)))
				break
			}
			body = &window{r: bytes.NewReader(buf), size: n}
		}
		runner.run(func(pctx context.Context) error {
			if buf != nil {
				defer func() { buffers <- buf }()
			}
			out, err := s.client.UploadPart(pctx, &awss3.UploadPartInput{
				Bucket:            aws.String(s.cfg.Bucket),
				Key:               s.fullKey(key),
				UploadId:          aws.String(uploadID),
				PartNumber:        aws.Int32(int32(i + 1)),
				Body:              body,
				ContentLength:     aws.Int64(n),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
			})
			if err != nil {
				return s.classify(ctx, fmt.Sprintf("put (part %d of)", i+1), key, err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1)), ChecksumCRC32: out.ChecksumCRC32}
			return nil
		})
	}
	return s.finishMultipart(ctx, runner, "put", key, key, uploadID, parts)
}

// abort cancels a multipart upload, even when ctx has ended, so that its
// parts stop costing storage. A failure is logged: a bucket lifecycle rule
// for incomplete uploads is the backstop.
func (s *Store) abort(ctx context.Context, key, uploadID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{
		Bucket:   aws.String(s.cfg.Bucket),
		Key:      s.fullKey(key),
		UploadId: aws.String(uploadID),
	})
	if err != nil {
		s.log.Warn("abort multipart upload", "key", key, "upload_id", uploadID, "err", err)
		return
	}
	s.log.Debug("aborted multipart upload", "key", key, "upload_id", uploadID)
}

// multipartCopy copies an object too large for CopyObject with
// UploadPartCopy, several parts at a time.
func (s *Store) multipartCopy(ctx context.Context, op, srcKey, dstKey, class string, size int64, meta map[string]string) error {
	partSize, nParts := partLayout(size, s.copyPartSize)
	// UploadPartCopy copies bytes only: the source's metadata goes on the
	// new upload.
	create := &awss3.CreateMultipartUploadInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(dstKey), Metadata: meta}
	if class != "" {
		create.StorageClass = types.StorageClass(class)
	}
	up, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return s.classify(ctx, op, dstKey, err)
	}
	uploadID := aws.ToString(up.UploadId)
	s.log.Debug("multipart copy", "src", srcKey, "dst", dstKey, "size", size, "parts", nParts, "part_size", partSize)
	parts := make([]types.CompletedPart, nParts)
	source := s.copySource(srcKey)
	runner := newPartRunner(ctx, s.cfg.PartConcurrency)
	for i := range nParts {
		if !runner.acquire() {
			break
		}
		off := int64(i) * partSize
		end := min(off+partSize, size) - 1
		runner.run(func(pctx context.Context) error {
			out, err := s.client.UploadPartCopy(pctx, &awss3.UploadPartCopyInput{
				Bucket:          aws.String(s.cfg.Bucket),
				Key:             s.fullKey(dstKey),
				UploadId:        aws.String(uploadID),
				PartNumber:      aws.Int32(int32(i + 1)),
				CopySource:      aws.String(source),
				CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
			})
			if err != nil {
				return s.classify(ctx, fmt.Sprintf("%s (part %d)", op, i+1), srcKey, err)
			}
			parts[i] = types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(i + 1))}
			return nil
		})
	}
	return s.finishMultipart(ctx, runner, op, srcKey, dstKey, uploadID, parts)
}

// finishMultipart waits for the part uploads, then completes the upload of
// key; on any failure it aborts the upload so no parts are left behind.
// subject names the object in a cancellation error (the source of a copy).
func (s *Store) finishMultipart(ctx context.Context, runner *partRunner, op, subject, key, uploadID string, parts []types.CompletedPart) error {
	if err := runner.wait(ctx); err != nil {
		s.abort(ctx, key, uploadID)
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %s %s: %w", s, op, subject, ctx.Err())
		}
		return err
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.cfg.Bucket),
		Key:             s.fullKey(key),
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		s.abort(ctx, key, uploadID)
		return s.classify(ctx, op+" (complete)", key, err)
	}
	return nil
}
