// Package faultproxy is an HTTP reverse proxy that sits between gatewayd and
// a real S3 server (MinIO in the tests) and injects the failures a real
// object store shows: 503 SlowDown and 500 InternalError responses,
// connections reset before a request reaches the server or after it did the
// work (the response lost), latency, response bodies cut short, and whole
// outage windows in which every request is reset. Each fault comes at its
// own rate from a seeded random source, so a run can be repeated; rates can
// be changed while the proxy runs. Stats counts the requests, the faults
// and the body bytes that cross the proxy each way.
//
// The proxy forwards requests unchanged, Host header included, so SigV4
// signatures made for the proxy's address verify at the server behind it.
// It listens on loopback only.
package faultproxy

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Faults are the rates (0..1) at which each fault hits a request. At most
// one fault is injected per request; they are drawn in the order listed.
type Faults struct {
	SlowDown      float64 // 503 SlowDown, the request not forwarded
	InternalError float64 // 500 InternalError, the request not forwarded
	ResetBefore   float64 // connection reset, the request not forwarded
	ResetAfter    float64 // forwarded, done by the server, then the connection reset
	Truncate      float64 // a response body cut at a random point, then the connection reset
	Latency       float64 // delayed by a random time up to MaxLatency, then forwarded
	MaxLatency    time.Duration
}

// Stats count what the proxy did.
type Stats struct {
	Requests      int64 // requests received
	Forwarded     int64 // requests the server answered through the proxy
	SlowDown      int64
	InternalError int64
	ResetBefore   int64
	ResetAfter    int64
	Truncated     int64
	Delayed       int64
	OutageResets  int64 // requests reset inside an outage window
	// BytesUp is the request body bytes sent on to the server, BytesDown
	// the response body bytes of the server passed back to the client
	// (the proxy's own error responses not counted): what crosses the
	// wire to the object store and back.
	BytesUp, BytesDown int64
}

// Injected is the number of faults injected (delays not counted).
func (s Stats) Injected() int64 {
	return s.SlowDown + s.InternalError + s.ResetBefore + s.ResetAfter + s.Truncated + s.OutageResets
}

func (s Stats) String() string {
	return fmt.Sprintf("%d requests, %d forwarded; faults: %d slowdown, %d internal error, %d reset before, %d reset after, %d truncated, %d outage resets; %d delayed; %d bytes up, %d down",
		s.Requests, s.Forwarded, s.SlowDown, s.InternalError, s.ResetBefore, s.ResetAfter, s.Truncated, s.OutageResets, s.Delayed, s.BytesUp, s.BytesDown)
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	target *url.URL
	ln     net.Listener
	srv    *http.Server
	tr     *http.Transport

	mu          sync.Mutex
	rng         *rand.Rand
	faults      Faults
	outageUntil time.Time
	outageOn    bool

	requests, forwarded, slowDown, internalError, resetBefore, resetAfter, truncated, delayed, outageResets atomic.Int64
	bytesUp, bytesDown                                                                                      atomic.Int64
}

// Start starts a proxy on a free loopback port forwarding to target (for
// example "http://127.0.0.1:9000"), with no faults until SetFaults.
func Start(target string, seed uint64) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not an http://host:port URL", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{
		target: u, ln: ln,
		rng: newRand(seed),
		tr: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: time.Minute}
	go p.srv.Serve(ln)
	return p, nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// URL is the proxy's address as an endpoint: "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetFaults replaces the fault rates; the zero Faults passes everything.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Outage resets every request for d from now (d <= 0 ends an outage).
func (p *Proxy) Outage(d time.Duration) {
	p.mu.Lock()
	p.outageUntil = time.Now().Add(d)
	p.mu.Unlock()
}

// SetOutage starts (on) or ends (off) an outage of no set length.
func (p *Proxy) SetOutage(on bool) {
	p.mu.Lock()
	p.outageOn = on
	p.mu.Unlock()
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Requests: p.requests.Load(), Forwarded: p.forwarded.Load(),
		SlowDown: p.slowDown.Load(), InternalError: p.internalError.Load(),
		ResetBefore: p.resetBefore.Load(), ResetAfter: p.resetAfter.Load(),
		Truncated: p.truncated.Load(), Delayed: p.delayed.Load(), OutageResets: p.outageResets.Load(),
		BytesUp: p.bytesUp.Load(), BytesDown: p.bytesDown.Load(),
	}
}

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	p.tr.CloseIdleConnections()
	return err
}

type decision int

const (
	pass decision = iota
	outage
	slowDown
	internalError
	resetBefore
	resetAfter
	truncate
)

// decide draws the fate of one request; cut is where a truncated body
// stops, as a fraction of its length, and delay the latency to add.
func (p *Proxy) decide() (d decision, cut float64, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.outageOn || time.Now().Before(p.outageUntil) {
		return outage, 0, 0
	}
	f := p.faults
	if f.Latency > 0 && f.MaxLatency > 0 && p.rng.Float64() < f.Latency {
		delay = time.Duration(p.rng.Int64N(int64(f.MaxLatency)) + 1)
	}
	x := p.rng.Float64()
	cut = p.rng.Float64()
	for _, c := range []struct {
		rate float64
		d    decision
	}{{f.SlowDown, slowDown}, {f.InternalError, internalError}, {f.ResetBefore, resetBefore}, {f.ResetAfter, resetAfter}, {f.Truncate, truncate}} {
		if x < c.rate {
			return c.d, cut, delay
		}
		x -= c.rate
	}
	return pass, cut, delay
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	d, cut, delay := p.decide()
	if delay > 0 {
		p.delayed.Add(1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	switch d {
	case outage:
		p.outageResets.Add(1)
		reset(w)
		return
	case slowDown:
		p.slowDown.Add(1)
		s3Error(w, r, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		return
	case internalError:
		p.internalError.Add(1)
		s3Error(w, r, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		return
	case resetBefore:
		p.resetBefore.Add(1)
		reset(w)
		return
	}

	resp, err := p.forward(r)
	if err != nil {
		// The server behind the proxy is away: the client sees what it
		// would see without the proxy, a connection that fails.
		reset(w)
		return
	}
	defer resp.Body.Close()
	if d == resetAfter {
		io.Copy(io.Discard, resp.Body) // the server finished the work
		p.resetAfter.Add(1)
		reset(w)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if d == truncate && resp.ContentLength > 0 && r.Method == http.MethodGet {
		n := int64(cut * float64(resp.ContentLength))
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		w.WriteHeader(resp.StatusCode)
		n, _ = io.CopyN(w, resp.Body, n)
		p.bytesDown.Add(n)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		p.truncated.Add(1)
		// Aborting the handler closes the connection with the body short
		// of its Content-Length.
		panic(http.ErrAbortHandler)
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := io.Copy(w, resp.Body)
	p.bytesDown.Add(n)
	p.forwarded.Add(1)
}

// forward sends r to the target unchanged but for the address.
func (p *Proxy) forward(r *http.Request) (*http.Response, error) {
	out := r.Clone(context.WithoutCancel(r.Context()))
	out.RequestURI = ""
	out.URL.Scheme = p.target.Scheme
	out.URL.Host = p.target.Host
	out.Host = r.Host // the signature covers the Host the client used
	if r.ContentLength == 0 {
		out.Body = nil
	} else {
		out.Body = countingBody{out.Body, &p.bytesUp}
	}
	out.Header.Del("Connection")
	return p.tr.RoundTrip(out)
}

// countingBody adds the bytes read through it to n.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.n.Add(int64(n))
	return n, err
}

// reset closes the client's connection with a TCP RST.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

func s3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>faultproxy</RequestId></Error>`,
		code, msg, r.URL.Path)
}
