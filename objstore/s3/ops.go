package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// Get implements objstore.Store. Keys are validated only when written, so
// that objects other S3 clients put under the prefix can still be read.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if key == "" {
		return nil, objstore.ValidKey(key)
	}
	if offset < 0 || length == 0 {
		// S3 cannot express an empty range; check the bounds with a HEAD.
		return s.emptyRange(ctx, key, offset, length)
	}
	in := &awss3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(key)}
	ranged := offset > 0 || length > 0
	if ranged {
		r := fmt.Sprintf("bytes=%d-", offset)
		if length > 0 {
			r += fmt.Sprint(offset + length - 1)
		}
		in.Range = aws.String(r)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable {
			// The range starts at or past the end (or the object is
			// empty): only an empty read at the very end is allowed.
			return s.emptyRange(ctx, key, offset, length)
		}
		return nil, s.classify(ctx, "get", key, err)
	}
	want := aws.ToInt64(out.ContentLength)
	if ranged {
		var start, end, total int64
		if _, err := fmt.Sscanf(aws.ToString(out.ContentRange), "bytes %d-%d/%d", &start, &end, &total); err != nil || start != offset {
			out.Body.Close()
			return nil, errkind.Mark(errkind.Retryable, fmt.Errorf("%s: get %s: unexpected Content-Range %q for %s", s, key, aws.ToString(out.ContentRange), *in.Range))
		}
		// S3 shortens a range that runs past the end; the contract says
		// that is an error.
		if _, err := objstore.RangeLength(total, offset, length); err != nil {
			out.Body.Close()
			return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
		}
		want = end - start + 1
	}
	return &body{ctx: ctx, s: s, key: key, rc: out.Body, remaining: want}, nil
}

func (s *Store) emptyRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	oi, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if _, err := objstore.RangeLength(oi.Size, offset, length); err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
}

// body is a GetObject response body that reports a short or broken
// transfer as a Retryable error instead of a quiet EOF.
type body struct {
	ctx       context.Context
	s         *Store
	key       string
	rc        io.ReadCloser
	remaining int64
}

func (b *body) Read(p []byte) (int, error) {
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	if len(p) == 0 {
		if b.remaining == 0 {
			return 0, io.EOF
		}
		return 0, nil
	}
	n, err := b.rc.Read(p)
	b.remaining -= int64(n)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF && b.remaining == 0:
		return n, io.EOF
	case err == io.EOF:
		err = fmt.Errorf("body ended %d bytes early: %w", b.remaining, io.ErrUnexpectedEOF)
	}
	if b.ctx.Err() != nil {
		return n, fmt.Errorf("%s: read %s: %w", b.s, b.key, err)
	}
	return n, errkind.Mark(errkind.Retryable, fmt.Errorf("%s: read %s: %w", b.s, b.key, err))
}

func (b *body) Close() error { return b.rc.Close() }

// Stat implements objstore.Store.
func (s *Store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if key == "" {
		return objstore.ObjectInfo{}, objstore.ValidKey(key) // would name the prefix itself
	}
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(key)})
	if err != nil {
		return objstore.ObjectInfo{}, s.classify(ctx, "stat", key, err)
	}
	return objstore.ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ModTime:      aws.ToTime(out.LastModified),
		ETag:         trimETag(out.ETag),
		StorageClass: normalizeClass(string(out.StorageClass)),
		Metadata:     nonEmpty(out.Metadata),
	}, nil
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// List implements objstore.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	in := &awss3.ListObjectsV2Input{
		Bucket:  aws.String(s.cfg.Bucket),
		Prefix:  aws.String(s.prefix + prefix),
		MaxKeys: aws.Int32(s.cfg.ListPageSize),
	}
	if after := objstore.ListStart(ctx); after != "" {
		in.StartAfter = aws.String(s.prefix + after) // a retry resuming a listing
	}
	for {
		out, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return s.classify(ctx, "list", prefix, err)
		}
		for _, o := range out.Contents {
			key, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix)
			if !ok {
				continue
			}
			err := fn(objstore.ObjectInfo{
				Key:          key,
				Size:         aws.ToInt64(o.Size),
				ModTime:      aws.ToTime(o.LastModified),
				ETag:         trimETag(o.ETag),
				StorageClass: normalizeClass(string(o.StorageClass)),
			})
			if err != nil {
				return err
			}
		}
		var lastRaw string
		if n := len(out.Contents); n > 0 {
			lastRaw = aws.ToString(out.Contents[n-1].Key)
		}
		if !moreToList(in, out, len(out.Contents), lastRaw) {
			return nil
		}
	}
}

// moreToList reports whether a listing goes on after the page out, of n
// entries up to the full key lastRaw, and sets in up for the next page: by
// its continuation token, or, when a listing that started after a key ends
// with a full page, by one more request after the page's last key: MinIO
// ends such a listing early, with a full page that claims to be the last.
func moreToList(in *awss3.ListObjectsV2Input, out *awss3.ListObjectsV2Output, n int, lastRaw string) bool {
	if aws.ToBool(out.IsTruncated) && aws.ToString(out.NextContinuationToken) != "" {
		in.ContinuationToken = out.NextContinuationToken
		return true
	}
	if in.StartAfter == nil || n < int(aws.ToInt32(in.MaxKeys)) || lastRaw == "" {
		return false
	}
	in.StartAfter, in.ContinuationToken = aws.String(lastRaw), nil
	return true
}

// ListDir implements objstore.DirLister with ListObjectsV2 and delimiter "/".
func (s *Store) ListDir(ctx context.Context, prefix string, fn func(objstore.ObjectInfo, bool) error) error {
	in := &awss3.ListObjectsV2Input{
		Bucket:    aws.String(s.cfg.Bucket),
		Prefix:    aws.String(s.prefix + prefix),
		Delimiter: aws.String("/"),
		MaxKeys:   aws.Int32(s.cfg.ListPageSize),
	}
	if after := objstore.ListStart(ctx); after != "" {
		in.StartAfter = aws.String(s.prefix + after)
	}
	type item struct {
		oi       objstore.ObjectInfo
		isPrefix bool
	}
	last := "" // the last key delivered: a prefix may come again after a full page
	for {
		out, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return s.classify(ctx, "list", prefix, err)
		}
		// A page's objects and prefixes are each sorted and together a
		// contiguous run of keys: merge them.
		items := make([]item, 0, len(out.Contents)+len(out.CommonPrefixes))
		for _, o := range out.Contents {
			if key, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix); ok {
				items = append(items, item{oi: objstore.ObjectInfo{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified),
					ETag: trimETag(o.ETag), StorageClass: normalizeClass(string(o.StorageClass))}})
			}
		}
		for _, p := range out.CommonPrefixes {
			if key, ok := strings.CutPrefix(aws.ToString(p.Prefix), s.prefix); ok {
				items = append(items, item{oi: objstore.ObjectInfo{Key: key}, isPrefix: true})
			}
		}
		sort.Slice(items, func(i, j int) bool { return items[i].oi.Key < items[j].oi.Key })
		for _, it := range items {
			if last != "" && it.oi.Key <= last {
				continue
			}
			if err := fn(it.oi, it.isPrefix); err != nil {
				return err
			}
			last = it.oi.Key
		}
		var lastRaw string
		if len(items) > 0 {
			lastRaw = s.prefix + items[len(items)-1].oi.Key
		}
		if !moreToList(in, out, len(out.Contents)+len(out.CommonPrefixes), lastRaw) {
			return nil
		}
	}
}

// Delete implements objstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if key == "" {
		return objstore.ValidKey(key)
	}
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(key)})
	if err != nil {
		err = s.classify(ctx, "delete", key, err)
		if objstore.IsNotFound(err) {
			return nil
		}
		return err
	}
	return nil
}

// Copy implements objstore.Copier. The copy gets the store's configured
// storage class.
func (s *Store) Copy(ctx context.Context, srcKey, dstKey string) error {
	if err := objstore.ValidKey(dstKey); err != nil {
		return err
	}
	return s.copyObject(ctx, "copy", srcKey, dstKey, s.cfg.StorageClass)
}

// SetStorageClass implements objstore.StorageClasser by copying the object
// onto itself with the new class. Objects in an archive class (GLACIER,
// DEEP_ARCHIVE) must be restored before they can be moved back.
func (s *Store) SetStorageClass(ctx context.Context, key, class string) error {
	if class == "" {
		class = "STANDARD"
	}
	return s.copyObject(ctx, "set storage class of", key, key, class)
}

// SetMeta implements objstore.MetadataPutter by copying the object onto
// itself with the new metadata.
func (s *Store) SetMeta(ctx context.Context, key string, meta map[string]string) error {
	if err := objstore.ValidMetadata(meta); err != nil {
		return fmt.Errorf("%s: set metadata of %s: %w", s, key, err)
	}
	if meta == nil {
		meta = map[string]string{}
	}
	return s.copyWith(ctx, "set metadata of", key, key, s.cfg.StorageClass, meta)
}

func (s *Store) copyObject(ctx context.Context, op, srcKey, dstKey, class string) error {
	return s.copyWith(ctx, op, srcKey, dstKey, class, nil)
}

// copyWith copies srcKey to dstKey; meta nil keeps the source's metadata,
// otherwise meta replaces it.
func (s *Store) copyWith(ctx context.Context, op, srcKey, dstKey, class string, meta map[string]string) error {
	src, err := s.Stat(ctx, srcKey)
	if err != nil {
		return err
	}
	if src.Size > s.copyThreshold {
		m := src.Metadata
		if meta != nil {
			m = meta
		}
		return s.multipartCopy(ctx, op, srcKey, dstKey, class, src.Size, m)
	}
	in := &awss3.CopyObjectInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               s.fullKey(dstKey),
		CopySource:        aws.String(s.copySource(srcKey)),
		MetadataDirective: types.MetadataDirectiveCopy,
	}
	if meta != nil {
		in.MetadataDirective, in.Metadata = types.MetadataDirectiveReplace, meta
	}
	if class != "" {
		in.StorageClass = types.StorageClass(class)
	}
	if _, err := s.client.CopyObject(ctx, in); err != nil {
		return s.classify(ctx, op, srcKey, err)
	}
	return nil
}

// copySource is "bucket/key", URL-encoded as CopySource must be.
func (s *Store) copySource(key string) string {
	const unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/"
	var b strings.Builder
	for _, c := range []byte(s.cfg.Bucket + "/" + s.prefix + key) {
		if strings.IndexByte(unreserved, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.PutMeta(ctx, key, r, size, nil)
}

// PutMeta implements objstore.MetadataPutter: metadata goes as
// x-amz-meta-* headers.
func (s *Store) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	return s.putObject(ctx, key, r, size, meta, objstore.Retention{})
}

// putObject is PutMeta of an object retained as ret (none when zero).
func (s *Store) putObject(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string, ret objstore.Retention) error {
	if err := objstore.ValidKey(key); err != nil {
		return err
	}
	if err := objstore.ValidMetadata(meta); err != nil {
		return fmt.Errorf("%s: put %s: %w", s, key, err)
	}
	if size < 0 {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: negative size %d", s, key, size))
	}
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: reader cannot seek: %w", s, key, err))
	}
	if size > s.cfg.MultipartThreshold {
		return s.putMultipart(ctx, key, r, start, size, meta, ret)
	}
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           s.fullKey(key),
		Body:          &window{r: r, start: start, size: size},
		ContentLength: aws.Int64(size),
		Metadata:      meta,
	}
	if s.cfg.StorageClass != "" {
		in.StorageClass = types.StorageClass(s.cfg.StorageClass)
	}
	if !ret.IsZero() {
		in.ObjectLockMode, in.ObjectLockRetainUntilDate = types.ObjectLockMode(ret.Mode), aws.Time(ret.Until)
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return s.classify(ctx, "put", key, err)
	}
	return nil
}

// window is the size bytes of r from start, as a ReadSeeker of its own:
// the SDK reads a body to its end (to sign or checksum it) and seeks back.
type window struct {
	r           io.ReadSeeker
	start, size int64
	pos         int64
	seeked      bool // r is known to be at start+pos
}

func (w *window) Read(p []byte) (int, error) {
	if w.pos >= w.size {
		return 0, io.EOF
	}
	if !w.seeked {
		if _, err := w.r.Seek(w.start+w.pos, io.SeekStart); err != nil {
			return 0, err
		}
		w.seeked = true
	}
	if rest := w.size - w.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := w.r.Read(p)
	w.pos += int64(n)
	if err == io.EOF && w.pos < w.size {
		err = errkind.Mark(errkind.Permanent, fmt.Errorf("reader ended after %d of %d bytes: %w", w.pos, w.size, io.ErrUnexpectedEOF))
	}
	return n, err
}

func (w *window) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += w.pos
	case io.SeekEnd:
		offset += w.size
	default:
		return 0, errors.New("window: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("window: negative position")
	}
	w.pos = offset
	w.seeked = false
	return offset, nil
}

// PutIfAbsent implements objstore.ConditionalPutter with If-None-Match: *.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (string, error) {
	return s.putIf(ctx, "put if absent", key, r, size, func(in *awss3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
}

// PutIfMatch implements objstore.ConditionalPutter with If-Match.
func (s *Store) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (string, error) {
	if etag == "" {
		return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put if match %s: empty ETag", s, key))
	}
	return s.putIf(ctx, "put if match", key, r, size, func(in *awss3.PutObjectInput) { in.IfMatch = aws.String(`"` + etag + `"`) })
}

// putIf is a single PutObject with the condition set by cond: S3 checks
// conditions on PutObject and CompleteMultipartUpload only, and these
// objects are small.
func (s *Store) putIf(ctx context.Context, op, key string, r io.ReadSeeker, size int64, cond func(*awss3.PutObjectInput)) (string, error) {
	if err := objstore.ValidKey(key); err != nil {
		return "", err
	}
	if size < 0 || size > s.cfg.MultipartThreshold {
		return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: %d bytes: conditional puts take at most %d", s, op, key, size, s.cfg.MultipartThreshold))
	}
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: reader cannot seek: %w", s, op, key, err))
	}
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           s.fullKey(key),
		Body:          &window{r: r, start: start, size: size},
		ContentLength: aws.Int64(size),
	}
	if s.cfg.StorageClass != "" {
		in.StorageClass = types.StorageClass(s.cfg.StorageClass)
	}
	cond(in)
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		if ctx.Err() == nil {
			switch status := httpStatus(err); {
			case status == http.StatusPreconditionFailed:
				return "", objstore.PreconditionFailed(s, op, key, apiCode(err))
			case status == http.StatusNotFound && in.IfMatch != nil && !notKeyCodes[apiCode(err)]:
				// If-Match on a missing key.
				return "", objstore.PreconditionFailed(s, op, key, "no object")
			case status == http.StatusConflict && apiCode(err) == "ConditionalRequestConflict":
				// Another conditional write to the key is in progress.
				return "", errkind.Mark(errkind.Retryable, fmt.Errorf("%s: %s %s: %w", s, op, key, err))
			}
		}
		return "", s.classify(ctx, op, key, err)
	}
	return trimETag(out.ETag), nil
}
