package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/config"
)

func newVolumeWaitCmd(g *globals) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "wait NAME",
		Short: "Wait until a volume restored from a snapshot has all its data on its local disk (hydration), with progress",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			return waitHydrated(cmd, c, args[0], quiet)
		},
	}
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}

// hydratePoll is how often a hydration wait asks the daemon.
const hydratePoll = 250 * time.Millisecond

// waitHydrated polls the volume until its hydration is complete, drawing
// a progress bar on stderr, and prints one line when it is.
func waitHydrated(cmd *cobra.Command, c *admin.Client, name string, quiet bool) error {
	ctx := cmd.Context()
	bar := &progressBar{w: cmd.ErrOrStderr(), quiet: quiet}
	defer bar.done()
	start := time.Now()
	base := int64(-1)
	for {
		var v volumeapi.VolumeStatus
		if err := c.Do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(name), nil, &v); err != nil {
			return err
		}
		h := v.Stats.Hydration
		if h == nil {
			fmt.Fprintf(cmd.OutOrStdout(), "volume %s has nothing to hydrate (not a stored volume restored from a snapshot)\n", v.Name)
			return nil
		}
		chunk := int64(v.ChunkSize)
		done, total := int64(h.DoneChunks)*chunk, int64(h.TotalChunks)*chunk
		if base < 0 {
			base = done
		}
		bar.draw(done, total, base, time.Since(start))
		if h.Complete {
			bar.done()
			fmt.Fprintf(cmd.OutOrStdout(), "volume %s hydrated: %d chunks (%s) on its disk\n", v.Name, h.TotalChunks, config.ByteSize(total).Human())
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(hydratePoll):
		}
	}
}
