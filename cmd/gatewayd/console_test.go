package main

// The web console, driven by a real headless Chromium (chromedp) against
// the real daemon: log in, see a volume created with the CLI, press
// "Snapshot now" and see the snapshot, watch a restore hydrate, create a
// volume from the form, refresh a share, set a bandwidth limit and a
// schedule window, see the charts draw; then the
// same listener probed as another site's page would: no token, no
// session, no CSRF token, a foreign Origin.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/bandwidthapi"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/volume"
)

// chromium finds the browser; without one the test fails and says how to
// install it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium on PATH; the web console's browser test needs it: apt-get install -y --no-install-recommends chromium")
	return ""
}

// consoleURL is the daemon's admin TCP listener, from its status.
func consoleURL(t *testing.T, dataDir string) string {
	t.Helper()
	st := statusJSON(t, dataDir)
	for _, f := range st.Frontends {
		if f.Name == "admin-tcp" {
			if !strings.Contains(f.State, "/console/") {
				t.Fatalf("admin-tcp frontend does not name the console: %+v", f)
			}
			return "http://" + f.Listen
		}
	}
	t.Fatalf("no admin-tcp frontend in %+v", st.Frontends)
	return ""
}

// saveArtifact keeps a file the test produced: in the test's temporary
// directory, and in $GATEWAYD_ARTIFACTS when that is set.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	dirs := []string{t.TempDir()}
	if d := os.Getenv("GATEWAYD_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("artifact: %s", p)
	}
}

func TestConsoleInBrowser(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	chrome := chromium(t)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	// A restore slow enough to watch, also when the page polls slowly on a
	// busy machine: 16 chunks at 32 KiB/s, half a minute.
	setConfig(t, dir, map[string]map[string]any{"volumes": {"hydrate_rate": "32KiB"}})
	d := serve(t, dir, "--admin-listen", "127.0.0.1:0")
	base := consoleURL(t, dir)
	tokenBytes, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenBytes))
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "vol1", "--size", "64M", "--chunk-size", "64K")
	attach(t, context.Background(), dir, "vol1").write(0, testrand.Bytes(3, 1<<20))
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1400, 2000), chromedp.UserDataDir(t.TempDir()),
		// Everything stays on loopback: no updates, no safe browsing, no sync.
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("no-proxy-server", true))...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute) // an overall deadline; every step waits for its condition
	defer cancel()
	fail := func(what string, err error) {
		t.Helper()
		dumpCtx, cancelDump := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancelDump()
		page, perr := chromedp.Run(dumpCtx, chromedp.OuterHTML("body"))
		// The daemon's log is read once it has exited.
		_ = d.cmd.Process.Kill()
		<-d.done
		saveArtifact(t, "console-failure.html", []byte(page))
		t.Fatalf("%s: %v\ndaemon log:\n%s\n(the page, %v, is in console-failure.html)", what, err, d.stderr, perr)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			fail(what, err)
		}
	}
	// waitJS waits until the expression is true in the page.
	waitJS := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
			fail("waiting for "+what, err)
		}
	}
	// clickRow clicks a button in a table row in one step in the page: the
	// console re-renders tables as it polls, so a node looked up by one
	// protocol call may be gone by the next (a real user's click has no
	// such gap).
	clickRow := func(what, sel string) {
		t.Helper()
		waitJS(what, fmt.Sprintf(`(() => { const b = document.querySelector(%q); if (!b || b.disabled) return false; b.click(); return true; })()`, sel))
	}
	// setValue sets a form field's value as a script would.
	setValue := func(sel, v string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).value = %q, true)`, sel, v))(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	text := func(what, sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			fail(what, err)
		}
		return s
	}

	step("open the console", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible("#login-form"))
	step("log in with a wrong token", chromedp.SendKeys("#token", "not-the-token-at-all"), chromedp.Click("#login-button"))
	waitJS("the refusal", `document.querySelector('#login-error').textContent.includes('wrong admin token')`)
	step("log in", setValue("#token", ""), chromedp.SendKeys("#token", token), chromedp.Click("#login-button"),
		chromedp.WaitVisible("#app"))

	// The overview: the gateway, its store reachable, its health.
	step("the volume created with the CLI", chromedp.WaitVisible(`#panel-volumes tr[data-key="vol1"]`))
	waitJS("the S3 endpoint reachable", `(document.querySelector('#s3-state') || {textContent: ''}).textContent.includes('reachable')`)
	waitJS("subsystem health", `document.querySelector('#health tr[data-key="uploadbuffer"]') !== null`)
	// Create tapes from the form: they are listed with their slots.
	step("create tapes", chromedp.SendKeys(`form[data-form="tapes"] input[name="count"]`, "2"),
		chromedp.SendKeys(`form[data-form="tapes"] input[name="size"]`, "1G"),
		chromedp.SendKeys(`form[data-form="tapes"] input[name="barcode_prefix"]`, "WEB"),
		chromedp.Click(`form[data-form="tapes"] button[type="submit"]`),
		chromedp.WaitVisible(`#panel-tapes tr[data-key="WEB0002L5"]`))
	waitJS("the tape's slot", `document.querySelector('#panel-tapes tr[data-key="WEB0001L5"]').textContent.includes('slot 1')`)
	if tl := tapeList(t, dir); len(tl) != 2 || tl["WEB0002L5"].Capacity != 1<<30 {
		t.Fatalf("tapes made by the console: %+v", tl)
	}

	// Snapshot now: the snapshot appears in the list, and in the catalog.
	clickRow("press Snapshot now", `#panel-volumes tr[data-key="vol1"] button[data-action="snapshot"]`)
	waitJS("the snapshot in the list", `[...document.querySelectorAll('#panel-snapshots tbody tr[data-key]')].some(r => r.textContent.includes('vol1'))`)
	snaps := snapshotList(t, dir)
	if len(snaps) != 1 || snaps[0].VolumeName != "vol1" {
		t.Fatalf("snapshots after Snapshot now: %+v", snaps)
	}
	if row := text("the snapshot row", `#panel-snapshots tbody tr[data-key="`+snaps[0].ID+`"]`); !strings.Contains(row, "taken from the console") {
		t.Fatalf("snapshot row %q", row)
	}

	// A stored volume restored from it: its hydration shows as a bar.
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "r1", "--kind", "stored", "--from-snapshot", snaps[0].ID)
	waitJS("the hydration bar", `document.querySelector('#panel-volumes tr[data-key="r1"] [role="progressbar"]') !== null`)
	waitJS("the hydration complete", `document.querySelector('#panel-volumes tr[data-key="r1"]').textContent.includes('complete')`)

	// Create a volume from the form.
	step("create a volume", chromedp.SendKeys(`form[data-form="volumes"] input[name="name"]`, "web1"),
		chromedp.SendKeys(`form[data-form="volumes"] input[name="size"]`, "32M"),
		setValue(`form[data-form="volumes"] select[name="kind"]`, "stored"),
		chromedp.Click(`form[data-form="volumes"] button[type="submit"]`),
		chromedp.WaitVisible(`#panel-volumes tr[data-key="web1"]`))
	var vols []volumeapi.VolumeStatus
	if err := json.Unmarshal([]byte(mustRun(t, "volume", "list", "--data-dir", dir, "-o", "json")), &vols); err != nil || len(vols) != 3 {
		t.Fatalf("volumes: %+v %v", vols, err)
	}
	for _, v := range vols {
		if v.Name == "web1" && (v.Size != 32<<20 || v.Kind != volume.Stored) {
			t.Fatalf("volume made by the console: %+v", v.Info)
		}
	}
	// A bad size is refused in the page, with a message.
	step("a bad size", chromedp.SendKeys(`form[data-form="volumes"] input[name="name"]`, "bad"),
		chromedp.SendKeys(`form[data-form="volumes"] input[name="size"]`, "lots"),
		chromedp.Click(`form[data-form="volumes"] button[type="submit"]`))
	waitJS("the bad size refused", `document.querySelector('#notice').textContent.includes('want a number')`)

	// Refresh a share.
	clickRow("refresh the share", `#panel-shares tr[data-key="docs"] button[data-action="refresh"]`)
	waitJS("the refresh done", `document.querySelector('#notice').textContent.includes('share docs refreshed')`)

	// Set a bandwidth limit: the daemon has it.
	step("set the upload limit", chromedp.SendKeys(`form[data-form="bandwidth"] input[name="upload"]`, "5M"),
		chromedp.Click(`form[data-form="bandwidth"] button[type="submit"]`))
	waitJS("the limit shown", `document.querySelector('#bandwidth-facts').textContent.includes('upload 5MiB/s')`)
	var bw bandwidthapi.BandwidthStatus
	if err := json.Unmarshal([]byte(mustRun(t, "bandwidth", "show", "--data-dir", dir, "-o", "json")), &bw); err != nil || bw.UploadBytesPerSec != 5<<20 || bw.DownloadBytesPerSec != 0 {
		t.Fatalf("bandwidth after the console set it: %+v %v", bw, err)
	}

	// A schedule window that covers every moment applies at once; removing
	// it brings the base limit back.
	step("add a schedule window", chromedp.SendKeys(`form[data-form="window"] input[name="days"]`, "mon-sun"),
		chromedp.SendKeys(`form[data-form="window"] input[name="start"]`, "00:00"),
		chromedp.SendKeys(`form[data-form="window"] input[name="end"]`, "24:00"),
		chromedp.SendKeys(`form[data-form="window"] input[name="upload"]`, "2M"),
		chromedp.Click(`form[data-form="window"] button[type="submit"]`))
	waitJS("the window in force", `document.querySelector('#bandwidth-facts').textContent.includes('2MiB/s (schedule window 1)')`)
	if err := json.Unmarshal([]byte(mustRun(t, "bandwidth", "show", "--data-dir", dir, "-o", "json")), &bw); err != nil || bw.Window != 1 || bw.Effective.UploadBytesPerSec != 2<<20 {
		t.Fatalf("bandwidth after the console added a window: %+v %v", bw, err)
	}
	clickRow("remove the window", `#bandwidth-schedule tr[data-key="1"] button[data-action="remove"]`)
	waitJS("the schedule empty", `document.querySelector('#bandwidth-schedule').textContent.includes('No schedule')`)
	bw = bandwidthapi.BandwidthStatus{} // window is left out of the JSON when 0
	if err := json.Unmarshal([]byte(mustRun(t, "bandwidth", "show", "--data-dir", dir, "-o", "json")), &bw); err != nil || bw.Window != 0 || bw.Effective.UploadBytesPerSec != 5<<20 {
		t.Fatalf("bandwidth after the console removed the window: %+v %v", bw, err)
	}

	// The charts: every series drawn from several samples.
	waitJS("every chart drawn", `(() => {
		const lines = [...document.querySelectorAll('#charts polyline')];
		return lines.length >= 8 && lines.every(l => l.getAttribute('points').trim().split(' ').length >= 3);
	})()`)
	legends, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#charts .legend span')].map(s => s.textContent)`))
	if err != nil {
		fail("read the legends", err)
	}
	for _, want := range []string{"used", "dirty", "hit", "volumes", "file shares", "upload", "download", "oldest cached volume"} {
		found := false
		for _, l := range legends {
			found = found || strings.HasPrefix(l, want+" ")
		}
		if !found {
			t.Errorf("no chart series %q in %q", want, legends)
		}
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		fail("screenshot", err)
	}
	saveArtifact(t, "console.png", png)

	// A reload keeps the session (the cookie), and the CSRF token with it.
	step("reload", chromedp.Reload(), chromedp.WaitVisible(`#panel-volumes tr[data-key="web1"]`))
	clickRow("snapshot after the reload", `#panel-volumes tr[data-key="web1"] button[data-action="snapshot"]`)
	waitJS("the second snapshot", `[...document.querySelectorAll('#panel-snapshots tbody tr[data-key]')].some(r => r.textContent.includes('web1'))`)
	// The cookie is out of the page's reach.
	cookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	if err != nil || strings.Contains(cookies, "gatewayd_session") {
		t.Fatalf("document.cookie %q %v: the session cookie must not be readable by scripts", cookies, err)
	}
	// Log out: the page asks for the token again and the API refuses it.
	step("log out", chromedp.Click("#logout"), chromedp.WaitVisible("#login-form"))
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch('/v1/volumes').then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/volumes after logout: %d %v", status, err)
	}

	consoleRefusesOtherSites(t, base, token, dir)
	d.stop(t)
}

// consoleRefusesOtherSites sends what another site's page, or a client
// without the token, could send.
func consoleRefusesOtherSites(t *testing.T, base, token, dataDir string) {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, hdr map[string]string, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	expect := func(what string, resp *http.Response, code int) {
		t.Helper()
		if resp.StatusCode != code {
			t.Errorf("%s: %s, want %d", what, resp.Status, code)
		}
	}
	resp := do("GET", "/console/", nil, "")
	expect("the console page", resp, http.StatusOK)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("console page CSP %q", csp)
	}
	expect("/ leads to the console", do("GET", "/", nil, ""), http.StatusFound)
	expect("the API without a token", do("GET", "/v1/volumes", nil, ""), http.StatusUnauthorized)
	expect("the API with a wrong token", do("GET", "/v1/volumes", map[string]string{"Authorization": "Bearer " + strings.Repeat("x", len(token))}, ""), http.StatusUnauthorized)
	expect("the API with the token", do("GET", "/v1/volumes", map[string]string{"Authorization": "Bearer " + token}, ""), http.StatusOK)
	expect("a form posted to the login", do("POST", "/console/login", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "token="+token), http.StatusForbidden)
	expect("a login from another origin", do("POST", "/console/login", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, `{"token":"`+token+`"}`), http.StatusForbidden)
	expect("a login with a wrong token", do("POST", "/console/login", map[string]string{"Content-Type": "application/json"}, `{"token":"wrong"}`), http.StatusUnauthorized)

	req, _ := http.NewRequest("POST", base+"/console/login", strings.NewReader(`{"token":"`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sess admin.Session
	if err := json.NewDecoder(resp.Body).Decode(&sess); err != nil || resp.StatusCode != http.StatusOK || len(sess.CSRF) < 32 {
		t.Fatalf("login: %s %+v %v", resp.Status, sess, err)
	}
	resp.Body.Close()
	setCookie := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"gatewayd_session=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(setCookie, want) {
			t.Errorf("session cookie %q lacks %s", setCookie, want)
		}
	}
	cookie := strings.SplitN(setCookie, ";", 2)[0]
	before := len(snapshotList(t, dataDir))
	snap := "/v1/volumes/vol1/snapshots"
	expect("a session read", do("GET", "/v1/volumes", map[string]string{"Cookie": cookie}, ""), http.StatusOK)
	expect("a change without the CSRF token", do("POST", snap, map[string]string{"Cookie": cookie, "Content-Type": "application/json"}, "{}"), http.StatusForbidden)
	expect("a change with a wrong CSRF token", do("POST", snap, map[string]string{"Cookie": cookie, "X-Gatewayd-CSRF": strings.Repeat("0", len(sess.CSRF))}, "{}"), http.StatusForbidden)
	expect("a change from another origin", do("POST", snap, map[string]string{"Cookie": cookie, "X-Gatewayd-CSRF": sess.CSRF, "Origin": "http://evil.example"}, "{}"), http.StatusForbidden)
	expect("a change marked cross-site", do("POST", snap, map[string]string{"Cookie": cookie, "X-Gatewayd-CSRF": sess.CSRF, "Sec-Fetch-Site": "cross-site"}, "{}"), http.StatusForbidden)
	if n := len(snapshotList(t, dataDir)); n != before {
		t.Fatalf("a refused request took a snapshot: %d snapshots, had %d", n, before)
	}
	expect("a change by the console", do("POST", snap, map[string]string{"Cookie": cookie, "X-Gatewayd-CSRF": sess.CSRF, "Origin": base}, "{}"), http.StatusCreated)
	if n := len(snapshotList(t, dataDir)); n != before+1 {
		t.Fatalf("%d snapshots after the console's request, want %d", n, before+1)
	}
	expect("logout", do("POST", "/console/logout", map[string]string{"Cookie": cookie, "X-Gatewayd-CSRF": sess.CSRF}, ""), http.StatusOK)
	expect("the session after logout", do("GET", "/v1/volumes", map[string]string{"Cookie": cookie}, ""), http.StatusUnauthorized)
}

func snapshotList(t *testing.T, dataDir string) []volume.SnapshotInfo {
	t.Helper()
	var list []volume.SnapshotInfo
	out := mustRun(t, "snapshot", "list", "--data-dir", dataDir, "-o", "json")
	if err := json.NewDecoder(bytes.NewReader([]byte(out))).Decode(&list); err != nil {
		t.Fatalf("snapshot list: %v\n%s", err, out)
	}
	return list
}
