// Package smb serves file shares over SMB. gatewayd does not speak SMB
// itself: Samba's smbd is the reference server. This package owns what
// stands between smbd and a share:
//
//   - a FUSE view (View) of each share's fileshare filesystem, mounted
//     under the data directory, through which smbd reads and writes; every
//     call goes to the same fileshare API the NFS frontend uses, so NFS,
//     SMB and S3 see the same files and a write is durable in the share
//     upload buffer before the kernel is told it is done;
//   - smb.conf, generated from the share list (Conf);
//   - smbd as the daemon's child (Supervisor): started with its own state
//     directories, restarted when it dies, reloaded when shares change,
//     stopped on shutdown; FUSE mounts left by a killed gatewayd are
//     removed at the next start (CleanStale);
//   - Samba's user database (Users), through smbpasswd and pdbedit;
//   - Active Directory membership (Join, Leave, DomainStatus): net ads,
//     winbindd supervised beside smbd, the member's smb.conf;
//   - who may use each share (Access): valid, invalid and admin users,
//     checked so that no entry can change smb.conf's structure.
//
// Samba keeps DOS attributes, creation times, NT ACLs and alternate data
// streams in extended attributes (the generated smb.conf asks for them);
// the view keeps them with the file through the share, and answers the NT
// ACL of a file that has none of its own, such as an object put in the
// bucket by another application, with the one its folder gives it
// (ntacl.go: Samba's security.NTACL format and MS-DTYP inheritance).
// docs/smb.md has the details.
package smb
