package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reply latency of the NFS and iSCSI frontends. The buckets span a cached
// metadata call on loopback (100 µs) to a call stuck behind the object
// store (a minute): a client's timeout sits in the upper half.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// latency holds the histograms; the frontends report to them through the
// functions below, and newMetrics registers them.
type latency struct {
	nfs, iscsi *prometheus.HistogramVec
}

func newLatency() latency {
	return latency{
		nfs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatewayd_nfs_request_duration_seconds",
			Help:    "NFS and MOUNT calls from arrival to reply, by procedure.",
			Buckets: latencyBuckets,
		}, []string{"proc"}),
		iscsi: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatewayd_iscsi_command_duration_seconds",
			Help:    "iSCSI SCSI commands from arrival to status, by class (read, write, other).",
			Buckets: latencyBuckets,
		}, []string{"op"}),
	}
}

func (l latency) observeNFS(proc string, d time.Duration) {
	l.nfs.WithLabelValues(proc).Observe(d.Seconds())
}

func (l latency) observeISCSI(op string, d time.Duration) {
	l.iscsi.WithLabelValues(op).Observe(d.Seconds())
}
