// Package iscsi is gatewayd's iSCSI target (RFC 7143). This file set so far
// holds the wire layer: PDU framing with header and data digests, and the
// text key=value format of login and text negotiation. Sessions, login,
// CHAP and SCSI dispatch build on it.
package iscsi
