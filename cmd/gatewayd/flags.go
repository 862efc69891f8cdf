package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatewayd/gatewayd/config"
)

// overrides are config options that flags may set over gatewayd.yaml.
type overrides struct {
	storeURL, s3Endpoint, s3Region, s3AccessKey, s3SecretKey    string
	s3PathStyle, nfsRpcbind, nfsReadDelegations                 bool
	adminSocket, adminListen, iscsiListen, nfsListen, smbListen string
	logLevel                                                    string
}

func (o *overrides) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.storeURL, "store", "", "object store: file://DIR or s3://BUCKET[/PREFIX]")
	fs.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (empty: AWS)")
	fs.StringVar(&o.s3Region, "s3-region", "", "S3 region")
	fs.BoolVar(&o.s3PathStyle, "s3-path-style", false, "path-style S3 addressing (MinIO, most on-premises servers)")
	fs.StringVar(&o.s3AccessKey, "s3-access-key", "", "S3 access key id (empty: default AWS credential chain)")
	fs.StringVar(&o.s3SecretKey, "s3-secret-key", "", "S3 secret access key")
	fs.StringVar(&o.adminSocket, "admin-socket", "", "admin API unix socket")
	fs.StringVar(&o.adminListen, "admin-listen", "", "also serve the admin API on this TCP address (needs the token)")
	fs.StringVar(&o.iscsiListen, "iscsi-listen", "", "iSCSI portal address")
	fs.StringVar(&o.nfsListen, "nfs-listen", "", "NFS listen address")
	fs.StringVar(&o.smbListen, "smb-listen", "", "SMB (smbd) listen address; empty turns SMB off")
	fs.BoolVar(&o.nfsRpcbind, "nfs-rpcbind", true, "register NFS and MOUNT with the host's rpcbind when one runs")
	fs.BoolVar(&o.nfsReadDelegations, "nfs-read-delegations", false, "hand NFSv4.1 clients read delegations (nfs.read_delegations)")
	fs.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error")
}

// apply sets every flag the user gave onto cfg, then validates it.
func (o *overrides) apply(cmd *cobra.Command, cfg *config.Config) error {
	set := func(name string, dst *string, v string) {
		if cmd.Flags().Changed(name) {
			*dst = v
		}
	}
	set("store", &cfg.Store.URL, o.storeURL)
	set("s3-endpoint", &cfg.Store.S3.Endpoint, o.s3Endpoint)
	set("s3-region", &cfg.Store.S3.Region, o.s3Region)
	set("s3-access-key", &cfg.Store.S3.AccessKeyID, o.s3AccessKey)
	set("s3-secret-key", &cfg.Store.S3.SecretAccessKey, o.s3SecretKey)
	set("admin-socket", &cfg.Admin.Socket, o.adminSocket)
	set("admin-listen", &cfg.Admin.TCPListen, o.adminListen)
	set("iscsi-listen", &cfg.ISCSI.Listen, o.iscsiListen)
	set("nfs-listen", &cfg.NFS.Listen, o.nfsListen)
	set("smb-listen", &cfg.SMB.Listen, o.smbListen)
	set("log-level", &cfg.LogLevel, o.logLevel)
	if cmd.Flags().Changed("s3-path-style") {
		cfg.Store.S3.PathStyle = o.s3PathStyle
	}
	if cmd.Flags().Changed("nfs-rpcbind") {
		cfg.NFS.Rpcbind = o.nfsRpcbind
	}
	if cmd.Flags().Changed("nfs-read-delegations") {
		cfg.NFS.ReadDelegations = o.nfsReadDelegations
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid option: %w", err)
	}
	return nil
}

// loadConfig reads the data directory's config and applies flags. With
// needInit, a data directory without a config is an error that says what to do.
func loadConfig(cmd *cobra.Command, g *globals, o *overrides, needInit bool) (*config.Config, error) {
	dir, err := g.absDataDir()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(dir)
	if errors.Is(err, config.ErrNoFile) {
		if needInit {
			return nil, fmt.Errorf("data directory %s is not initialised: run `gatewayd init --data-dir %s` first", dir, dir)
		}
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if o != nil {
		if err := o.apply(cmd, cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}
