// Package sqstest is a stand-in for an SQS queue, for tests: an HTTP
// server answering the calls aws-sdk-go-v2's SQS client makes to receive
// and delete messages, in SQS's JSON protocol. It is no SQS-compatible
// server: goaws v0.4.5, the newest the Go module proxy serves, answers
// only the older query protocol, and none was found among Debian's
// packages.
package sqstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// QueueURL is the URL of the one queue a Server holds.
const QueueURL = "http://sqs.test/123/gw-events"

// Server holds one queue: messages in it, messages received and not
// deleted (in flight), and counts of the calls.
type Server struct {
	URL string // the endpoint

	mu       sync.Mutex
	queue    []msg
	inFlight map[string]msg // by receipt handle
	sent     int
	receipts int
	deletes  int // messages deleted
}

type msg struct{ id, body string }

// Start starts a server; it stops when the test ends.
func Start(t testing.TB) *Server {
	s := &Server{inFlight: map[string]msg{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Send queues a message.
func (s *Server) Send(body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent++
	s.queue = append(s.queue, msg{id: fmt.Sprintf("m%d", s.sent), body: body})
}

// Counts says how many messages are queued, in flight and deleted.
func (s *Server) Counts() (queued, inFlight, deleted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue), len(s.inFlight), s.deletes
}

// ServeHTTP answers ReceiveMessage (without waiting: the poller asks
// again) and DeleteMessageBatch.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		QueueUrl            string
		MaxNumberOfMessages int
		Entries             []struct{ Id, ReceiptHandle string }
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if in.QueueUrl != QueueURL {
		http.Error(w, "no queue "+in.QueueUrl, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Header.Get("X-Amz-Target") {
	case "AmazonSQS.ReceiveMessage":
		out := []map[string]string{}
		for len(s.queue) > 0 && len(out) < max(1, in.MaxNumberOfMessages) {
			m := s.queue[0]
			s.queue = s.queue[1:]
			s.receipts++
			h := fmt.Sprintf("r%d", s.receipts)
			s.inFlight[h] = m
			out = append(out, map[string]string{"MessageId": m.id, "ReceiptHandle": h, "Body": m.body})
		}
		json.NewEncoder(w).Encode(map[string]any{"Messages": out})
	case "AmazonSQS.DeleteMessageBatch":
		ok := []map[string]string{}
		for _, e := range in.Entries {
			delete(s.inFlight, e.ReceiptHandle)
			s.deletes++
			ok = append(ok, map[string]string{"Id": e.Id})
		}
		json.NewEncoder(w).Encode(map[string]any{"Successful": ok, "Failed": []any{}})
	default:
		http.Error(w, "unknown target "+r.Header.Get("X-Amz-Target"), http.StatusBadRequest)
	}
}
