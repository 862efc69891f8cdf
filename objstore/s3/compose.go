package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

var _ objstore.Composer = (*Store)(nil)

// Compose implements objstore.Composer with one multipart upload: copied
// ranges go as UploadPartCopy parts (x-amz-copy-source-range, with
// x-amz-copy-source-if-match when the part names the source's ETag), new
// data as UploadPart parts, the metadata on CreateMultipartUpload; any
// failure aborts the upload, so the old object stays and no parts linger.
//
// S3's part rules shape the upload (see planCompose): every part but the
// last is at least 5 MiB, no part is over 5 GiB, there are at most 10,000
// parts. New data shorter than a part, with copied ranges on both sides,
// is sent together with enough of the copied bytes around it, read from
// the source, to make a part of 5 MiB (more on huge objects, whose parts
// must be larger to stay within 10,000): a small change in the middle of a
// large object costs a part's worth of upload and download, not the
// object. A copied stretch shorter than a part, between new data, is read
// and sent too. An object small enough to go up in one part goes up as a
// single PutObject.
func (s *Store) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	if err := objstore.CheckCompose(s, key, parts, meta); err != nil {
		return err
	}
	// Check every source (and its ETag) before anything is written.
	sizes := map[string]int64{}
	total, err := objstore.CheckParts(s, key, parts, func(p objstore.Part) (int64, error) {
		id := p.SrcKey + "\x00" + p.SrcETag
		if size, ok := sizes[id]; ok {
			return size, nil
		}
		size, err := s.statSource(ctx, key, p.SrcKey, p.SrcETag)
		sizes[id] = size
		return size, err
	})
	if err != nil {
		return err
	}
	segs, err := composeSegments(s, key, parts)
	if err != nil {
		return err
	}
	minPart, _ := partLayout(total, MinPartSize)
	plan := planCompose(segs, minPart, max(s.cfg.PartSize, minPart), max(s.copyPartSize, 2*minPart))
	if len(plan) == 0 {
		return s.PutMeta(ctx, key, bytes.NewReader(nil), 0, meta)
	}
	if len(plan) == 1 && !plan[0].copy {
		// One part: a single request does.
		buf, err := s.fillPart(ctx, key, plan[0], nil)
		if err != nil {
			return err
		}
		return s.PutMeta(ctx, key, bytes.NewReader(buf), int64(len(buf)), meta)
	}
	return s.composeMultipart(ctx, key, plan, meta)
}

// statSource returns the size of a Compose source, which must have ETag
// etag unless it is empty.
func (s *Store) statSource(ctx context.Context, key, src, etag string) (int64, error) {
	in := &awss3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(src)}
	if etag != "" {
		in.IfMatch = aws.String(`"` + etag + `"`)
	}
	out, err := s.client.HeadObject(ctx, in)
	if err != nil {
		return 0, s.classifyCompose(ctx, key, src, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// classifyCompose classifies an error about the source src of a Compose of
// key: a 412 is a changed source.
func (s *Store) classifyCompose(ctx context.Context, key, src string, err error) error {
	if ctx.Err() == nil && httpStatus(err) == http.StatusPreconditionFailed {
		return objstore.PreconditionFailed(s, "compose", key, "source "+src+" has another ETag")
	}
	return s.classify(ctx, "compose "+key+" from", src, err)
}

// A segment is a run of an object being composed: a range of a source, or
// new data read from r at pos.
type segment struct {
	src, etag string
	off       int64 // in the source
	r         io.ReadSeeker
	pos       int64 // in r
	n         int64
}

func (g segment) isCopy() bool { return g.r == nil }

// composeSegments turns parts into segments, leaving out empty ones and
// joining ranges that continue each other in one source.
func composeSegments(s fmt.Stringer, key string, parts []objstore.Part) ([]segment, error) {
	starts, err := objstore.DataStarts(s, key, parts)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for i, p := range parts {
		if p.Size == 0 {
			continue
		}
		g := segment{src: p.SrcKey, etag: p.SrcETag, off: p.SrcOffset, r: p.Data, pos: starts[i], n: p.Size}
		if n := len(segs); n > 0 && g.isCopy() && segs[n-1].isCopy() {
			if last := &segs[n-1]; last.src == g.src && last.etag == g.etag && last.off+last.n == g.off {
				last.n += g.n
				continue
			}
		}
		segs = append(segs, g)
	}
	return segs, nil
}

// A plannedPart is one part of the multipart upload: a copy of one source
// range (copy, a single segment), or bytes sent, gathered from segments
// (data read from the caller's readers, ranges read from their sources).
type plannedPart struct {
	copy bool
	segs []segment
	n    int64
}

// planCompose lays segs out as multipart upload parts under S3's rules:
// every part but the last at least minPart bytes, copies at most maxCopy
// (at least 2*minPart), sent parts of about sendSize (at least minPart).
// Given minPart from partLayout of the object's size, the parts are at
// most 10,000: all but the last are at least minPart.
//
// A copied range of minPart or more is copied (in pieces of at most
// maxCopy); a shorter one between data is read and sent with it. Data is
// sent in parts of sendSize; a part of data that would be short because a
// copy follows takes the bytes it lacks from the start of that copy (or
// the whole copy, when what would remain of it is too short to be a part).
func planCompose(segs []segment, minPart, sendSize, maxCopy int64) []plannedPart {
	var plan []plannedPart
	var pend plannedPart // bytes to send, not yet a part
	flush := func() {
		if pend.n > 0 {
			plan = append(plan, pend)
			pend = plannedPart{}
		}
	}
	send := func(g segment) {
		pend.segs = append(pend.segs, g)
		pend.n += g.n
	}
	for i, g := range segs {
		last := i == len(segs)-1
		if !g.isCopy() {
			for g.n > 0 {
				take := min(g.n, sendSize-pend.n)
				head := g
				head.n = take
				send(head)
				g.pos, g.n = g.pos+take, g.n-take
				if pend.n >= sendSize {
					flush()
				}
			}
			continue
		}
		if pend.n > 0 && pend.n < minPart {
			need := minPart - pend.n
			if rest := g.n - need; rest >= minPart || last && rest > 0 {
				head := g
				head.n = need
				send(head)
				flush()
				g.off, g.n = g.off+need, rest
			} else {
				send(g)
				if pend.n >= sendSize {
					flush()
				}
				continue
			}
		}
		flush()
		if g.n < minPart && !last {
			send(g)
			continue
		}
		pieces := (g.n + maxCopy - 1) / maxCopy
		for k := range pieces {
			// Equal pieces, the first ones a byte longer.
			n := g.n / pieces
			if k < g.n%pieces {
				n++
			}
			piece := g
			piece.n = n
			plan = append(plan, plannedPart{copy: true, segs: []segment{piece}, n: n})
			g.off += n
		}
	}
	flush()
	return plan
}

// fillPart reads a part to send into buf (grown as needed): data from the
// caller's readers, copied ranges from their sources.
func (s *Store) fillPart(ctx context.Context, key string, p plannedPart, buf []byte) ([]byte, error) {
	if int64(cap(buf)) < p.n {
		buf = make([]byte, p.n)
	}
	buf = buf[:p.n]
	at := buf
	for _, g := range p.segs {
		b := at[:g.n]
		at = at[g.n:]
		if g.isCopy() {
			if err := s.readSource(ctx, key, g, b); err != nil {
				return nil, err
			}
			continue
		}
		if _, err := g.r.Seek(g.pos, io.SeekStart); err != nil {
			return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("%s: compose %s: seek data: %w", s, key, err))
		}
		if _, err := io.ReadFull(g.r, b); err != nil {
			if errkind.Of(err) == errkind.Unknown {
				err = errkind.Mark(errkind.Permanent, err)
			}
			return nil, fmt.Errorf("%s: compose %s: read data: %w", s, key, err)
		}
	}
	return buf, nil
}

// readSource reads a copied range into b, to send it.
func (s *Store) readSource(ctx context.Context, key string, g segment, b []byte) error {
	in := &awss3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    s.fullKey(g.src),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", g.off, g.off+g.n-1)),
	}
	if g.etag != "" {
		in.IfMatch = aws.String(`"` + g.etag + `"`)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		return s.classifyCompose(ctx, key, g.src, err)
	}
	defer out.Body.Close()
	r := &body{ctx: ctx, s: s, key: g.src, rc: out.Body, remaining: g.n}
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("%s: compose %s: %w", s, key, err)
	}
	return nil
}

// composeMultipart runs the plan as one multipart upload: copies and sends
// several at a time, sent parts read in order into at most
// PartConcurrency buffers.
func (s *Store) composeMultipart(ctx context.Context, key string, plan []plannedPart, meta map[string]string) error {
	create := &awss3.CreateMultipartUploadInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(key), Metadata: meta}
	if s.cfg.StorageClass != "" {
		create.StorageClass = types.StorageClass(s.cfg.StorageClass)
	}
	up, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return s.classify(ctx, "compose", key, err)
	}
	uploadID := aws.ToString(up.UploadId)
	sent := int64(0)
	for _, p := range plan {
		if !p.copy {
			sent += p.n
		}
	}
	s.log.Debug("compose", "key", key, "parts", len(plan), "bytes_sent", sent)
	completed := make([]types.CompletedPart, len(plan))
	buffers := make(chan []byte, s.cfg.PartConcurrency)
	for range s.cfg.PartConcurrency {
		buffers <- nil // allocated on first use
	}
	runner := newPartRunner(ctx, s.cfg.PartConcurrency)
	for i, p := range plan {
		if !runner.acquire() {
			break
		}
		num := aws.Int32(int32(i + 1))
		if p.copy {
			g := p.segs[0]
			runner.run(func(pctx context.Context) error {
				in := &awss3.UploadPartCopyInput{
					Bucket:          aws.String(s.cfg.Bucket),
					Key:             s.fullKey(key),
					UploadId:        aws.String(uploadID),
					PartNumber:      num,
					CopySource:      aws.String(s.copySource(g.src)),
					CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", g.off, g.off+g.n-1)),
				}
				if g.etag != "" {
					in.CopySourceIfMatch = aws.String(`"` + g.etag + `"`)
				}
				out, err := s.client.UploadPartCopy(pctx, in)
				if err != nil {
					return s.classifyCompose(ctx, key, g.src, err)
				}
				completed[i] = types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: num}
				return nil
			})
			continue
		}
		buf, err := s.fillPart(runner.ctx, key, p, <-buffers)
		if err != nil {
			buffers <- nil
			<-runner.sem
			runner.fail(err)
			break
		}
		runner.run(func(pctx context.Context) error {
			defer func() { buffers <- buf }()
			// The upload carries no checksum algorithm: MinIO refuses
			// UploadPartCopy into one that has. So no part sends a
			// checksum header (S3 refuses one the upload does not
			// expect); Content-MD5 guards the bytes.
			sum := md5.Sum(buf)
			out, err := s.client.UploadPart(pctx, &awss3.UploadPartInput{
				Bucket:        aws.String(s.cfg.Bucket),
				Key:           s.fullKey(key),
				UploadId:      aws.String(uploadID),
				PartNumber:    num,
				Body:          bytes.NewReader(buf),
				ContentLength: aws.Int64(int64(len(buf))),
				ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
			}, func(o *awss3.Options) { o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired })
			if err != nil {
				return s.classify(ctx, fmt.Sprintf("compose (part %d of)", i+1), key, err)
			}
			completed[i] = types.CompletedPart{ETag: out.ETag, PartNumber: num}
			return nil
		})
	}
	return s.finishMultipart(ctx, runner, "compose", key, key, uploadID, completed)
}
