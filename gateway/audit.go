package gateway

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/config"
)

// openAudit opens the shares' audit log (shares.audit): the NFS and SMB
// frontends write to it for the shares with auditing on.
func openAudit(cfg *config.Config, logger *slog.Logger) (*audit.Log, error) {
	ac := cfg.Shares.Audit
	path := ac.Path
	if path == "" {
		path = "audit/audit.log"
	}
	return audit.Open(audit.Options{Path: cfg.Path(path), MaxSize: int64(ac.MaxSize), Keep: ac.Keep, Logger: logger})
}

// auditCollector exports the audit log's counts.
type auditCollector struct{ l *audit.Log }

var (
	descAuditEvents = prometheus.NewDesc("gatewayd_audit_events_total", "AuditNotifications: operations of NFS and SMB clients written to the audit log, by protocol.", []string{"protocol"}, nil)
	descAuditErrors = prometheus.NewDesc("gatewayd_audit_errors_total", "Audit records that could not be written (the log says why).", nil, nil)
)

func (c auditCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAuditEvents
	ch <- descAuditErrors
}

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	for _, p := range []string{"nfs3", "nfs4.1", "smb"} { // every protocol, 0 included
		ch <- prometheus.MustNewConstMetric(descAuditEvents, prometheus.CounterValue, float64(st.Written[p]), p)
	}
	ch <- prometheus.MustNewConstMetric(descAuditErrors, prometheus.CounterValue, float64(st.Errors))
}
