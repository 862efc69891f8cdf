package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
)

// Client talks to a gateway's admin API, on its unix socket or over TCP
// with a token.
type Client struct {
	base  string
	token string
	hc    *http.Client
	where string // for error messages
}

// NewUnixClient returns a client of the gateway serving on socketPath.
func NewUnixClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
	}
	return &Client{base: "http://gatewayd", hc: &http.Client{Transport: tr}, where: socketPath}
}

// NewTCPClient returns a client of the API at addr (host:port) using token.
func NewTCPClient(addr, token string) *Client {
	return &Client{base: "http://" + addr, token: token, hc: &http.Client{}, where: addr}
}

// APIError is an error answer of the API. Its message is the service's
// own, without a prefix: the CLI adds its one "gatewayd:".
type APIError struct {
	Code    int // HTTP status
	Message string
}

func (e *APIError) Error() string { return e.Message }

// ErrNotRunning means no gateway answers on the socket.
var ErrNotRunning = errors.New("gatewayd is not running")

// Do sends a request with in as its JSON body (if not nil) and decodes the
// JSON answer into out (if not nil). An error answer becomes an error
// carrying the server's message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w (no answer on %s): start it with `gatewayd serve`", ErrNotRunning, c.where)
		}
		return fmt.Errorf("admin API at %s: %w", c.where, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: read answer: %w", c.where, err)
	}
	if resp.StatusCode >= 400 {
		var e apiError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &APIError{Code: resp.StatusCode, Message: e.Error}
		}
		return &APIError{Code: resp.StatusCode, Message: fmt.Sprintf("admin API at %s: %s", c.where, resp.Status)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("admin API at %s: bad answer: %w", c.where, err)
		}
	}
	return nil
}

// Status fetches /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
