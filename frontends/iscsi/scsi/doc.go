// Package scsi is the transport-independent SCSI layer of gatewayd's
// targets: status and sense data, CDB field access, and the logical unit
// (LU) that every device type shares. The LU answers the SPC commands all
// device types have (INQUIRY, REQUEST SENSE, MODE SENSE/SELECT, REPORT
// SUPPORTED OPERATION CODES, RESERVE/RELEASE, PERSISTENT RESERVE IN/OUT),
// keeps unit attentions and reservations per I_T nexus, and hands the rest
// to the device type's command table: block devices (package sbc) and the
// tape library's drives and changer plug in beside each other.
//
// A device's handlers return data or an *Error; the LU turns an *Error into
// CHECK CONDITION with sense data in the format the initiator selected
// (fixed, or descriptor when the Control mode page's D_SENSE is set).
package scsi
