// Package console is gatewayd's web console: the page, its style sheet and
// its script, embedded in the binary (no CDN, no web font, no library
// fetched from anywhere). The script is a client of the admin API (the
// same /v1/... endpoints the CLI uses) and draws its charts itself, in SVG.
// The admin package serves these assets and the console's login on the
// TCP listener.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Assets are the console's files: index.html, console.css, console.js.
func Assets() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}

// Handler serves the assets at / (mount it under a prefix with
// http.StripPrefix) with headers that keep the page to its own origin:
// only its own script and style run, no other site may frame it, and
// nothing is cached past a restart of a newer gatewayd.
func Handler() http.Handler {
	files := http.FileServerFS(Assets())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
