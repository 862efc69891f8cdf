package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/objstore"
)

// coldProxy stands between gatewayd and MinIO (path-style) and gives one
// bucket S3's cold storage as AWS documents it, which MinIO lacks:
//
//   - CopyObject of an object onto itself into GLACIER or DEEP_ARCHIVE
//     (the archive move) puts it in that class (kept here: MinIO's copy
//     keeps its own class; the data does not change);
//   - HeadObject and ListObjectsV2 report the class, HeadObject with
//     x-amz-restore (ongoing-request "true", or "false" with the
//     expiry-date) while a restore runs or its copy is readable;
//   - GetObject, and CopyObject from it, of an archived object not
//     restored fail with 403 InvalidObjectState;
//   - RestoreObject answers 202 to a new request, 409
//     RestoreAlreadyInProgress while one runs, 200 to an object restored,
//     403 InvalidObjectState to one not archived, 400 MalformedXML to a
//     request without days or a known tier; a restore is done once it is
//     released (release), as if its time had passed.
//
// Everything else goes to MinIO as it came, signature and all (the Host
// header is kept). Where it may differ from AWS: restores take the time
// the test gives, not the tier's hours; the copy back to STANDARD is
// modelled, as is the class, so MinIO's own class of the object is not
// what the proxy reports; expiry of the restored copy is not modelled
// (it lasts the test); S3's request limits and charges are not either.
type coldProxy struct {
	t      *testing.T
	srv    *miniotest.Server
	bucket string
	URL    string

	mu       sync.Mutex
	cold     map[string]*coldObject // by key in the bucket
	accepted int                    // restores answered 202
	released bool
}

type coldObject struct {
	class     string
	restoring bool
	days      int
	tier      string
}

func startColdProxy(t *testing.T, srv *miniotest.Server, bucket string) *coldProxy {
	p := &coldProxy{t: t, srv: srv, bucket: bucket, cold: map[string]*coldObject{}}
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		host := r.Host
		director(r)
		r.Host = host // the signature covers it
		// MinIO refuses headers the signature does not cover.
		r.Header["X-Forwarded-For"] = nil
	}
	rp.ModifyResponse = p.rewrite
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(w, r, rp) }))
	t.Cleanup(hs.Close)
	p.URL = hs.URL
	return p
}

// release completes every restore under way, and every later one at once.
func (p *coldProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.released = true
	for _, o := range p.cold {
		o.restoring = false
	}
}

// counts returns how many objects are archived and how many restores were
// accepted.
func (p *coldProxy) counts(prefix string) (archived, accepted int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.cold {
		if strings.HasPrefix(k, prefix) {
			archived++
		}
	}
	return archived, p.accepted
}

// classes counts the archived objects under prefix by class, and the
// restores accepted for them by tier.
func (p *coldProxy) classes(prefix string) (classes, tiers map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	classes, tiers = map[string]int{}, map[string]int{}
	for k, o := range p.cold {
		if strings.HasPrefix(k, prefix) {
			classes[o.class]++
			if o.tier != "" {
				tiers[o.tier]++
			}
		}
	}
	return classes, tiers
}

// readable says whether an archived object's restored copy is there.
// p.mu held.
func (o *coldObject) readable() bool { return o.days > 0 && !o.restoring }

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}

func (p *coldProxy) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	prefix := "/" + p.bucket + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		rp.ServeHTTP(w, r)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, prefix)
	q := r.URL.Query()
	p.mu.Lock()
	o := p.cold[key]
	blocked := o != nil && !o.readable()
	p.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && q.Has("restore"):
		p.restore(w, r, key)
	case r.Method == http.MethodPut && r.Header.Get("x-amz-copy-source") != "":
		p.copy(w, r, key, rp)
	case r.Method == http.MethodGet && blocked && len(q) == 0:
		s3Error(w, http.StatusForbidden, "InvalidObjectState", "The operation is not valid for the object's storage class")
	default:
		if r.Method == http.MethodDelete {
			p.mu.Lock()
			delete(p.cold, key)
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}
}

type restoreRequest struct {
	Days int    `xml:"Days"`
	Tier string `xml:"GlacierJobParameters>Tier"`
}

func (p *coldProxy) restore(w http.ResponseWriter, r *http.Request, key string) {
	body, _ := io.ReadAll(r.Body)
	var req restoreRequest
	if err := xml.Unmarshal(body, &req); err != nil || req.Days < 1 || objstore.ValidTier(req.Tier) != nil {
		s3Error(w, http.StatusBadRequest, "MalformedXML", fmt.Sprintf("restore request %q", body))
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.cold[key]
	switch {
	case o == nil:
		s3Error(w, http.StatusForbidden, "InvalidObjectState", "Restore is not allowed for the object's current storage class")
	case o.restoring:
		s3Error(w, http.StatusConflict, "RestoreAlreadyInProgress", "Object restore is already in progress")
	case o.readable():
		o.days = req.Days
		w.WriteHeader(http.StatusOK)
	default:
		o.days, o.tier, o.restoring = req.Days, req.Tier, !p.released
		p.accepted++
		w.WriteHeader(http.StatusAccepted)
	}
}

// copy models a CopyObject of an object onto itself (a class change);
// other copies go to MinIO, unless their source is archived.
func (p *coldProxy) copy(w http.ResponseWriter, r *http.Request, key string, rp *httputil.ReverseProxy) {
	src, err := url.PathUnescape(strings.TrimPrefix(r.Header.Get("x-amz-copy-source"), "/"))
	if i := strings.IndexByte(src, '?'); i >= 0 {
		src = src[:i]
	}
	if err != nil || !strings.HasPrefix(src, p.bucket+"/") {
		rp.ServeHTTP(w, r)
		return
	}
	src = strings.TrimPrefix(src, p.bucket+"/")
	p.mu.Lock()
	o := p.cold[src]
	if o != nil && !o.readable() {
		p.mu.Unlock()
		s3Error(w, http.StatusForbidden, "InvalidObjectState", "The source object of the COPY action is not in the active tier")
		return
	}
	if src != key {
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
		return
	}
	class := r.Header.Get("x-amz-storage-class")
	if objstore.ArchiveClasses[class] {
		p.cold[key] = &coldObject{class: class}
	} else {
		delete(p.cold, key)
	}
	p.mu.Unlock()
	head, err := p.srv.Client().HeadObject(r.Context(), &awss3.HeadObjectInput{Bucket: aws.String(p.bucket), Key: aws.String(key)})
	if err != nil {
		s3Error(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><CopyObjectResult><LastModified>%s</LastModified><ETag>%s</ETag></CopyObjectResult>`,
		time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), aws.ToString(head.ETag))
}

var (
	contentsRE = regexp.MustCompile(`(?s)<Contents>.*?</Contents>`)
	keyRE      = regexp.MustCompile(`<Key>([^<]*)</Key>`)
	classRE    = regexp.MustCompile(`<StorageClass>[^<]*</StorageClass>`)
)

// rewrite gives HEAD and listing answers the modelled classes.
func (p *coldProxy) rewrite(resp *http.Response) error {
	r := resp.Request
	prefix := "/" + p.bucket
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, prefix+"/"):
		o := p.cold[strings.TrimPrefix(r.URL.Path, prefix+"/")]
		if o == nil || resp.StatusCode != http.StatusOK {
			return nil
		}
		resp.Header.Set("x-amz-storage-class", o.class)
		switch {
		case o.restoring:
			resp.Header.Set("x-amz-restore", objstore.FormatRestoreHeader(true, time.Time{}))
		case o.readable():
			resp.Header.Set("x-amz-restore", objstore.FormatRestoreHeader(false, time.Now().Add(time.Duration(o.days)*24*time.Hour)))
		}
	case r.Method == http.MethodGet && strings.TrimSuffix(r.URL.Path, "/") == prefix && r.URL.Query().Get("list-type") == "2" && resp.StatusCode == http.StatusOK:
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		body = contentsRE.ReplaceAllFunc(body, func(c []byte) []byte {
			m := keyRE.FindSubmatch(c)
			if m == nil {
				return c
			}
			o := p.cold[string(m[1])]
			if o == nil {
				return c
			}
			return classRE.ReplaceAll(c, []byte("<StorageClass>"+o.class+"</StorageClass>"))
		})
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		resp.Header.Del("Content-Encoding")
	}
	return nil
}
