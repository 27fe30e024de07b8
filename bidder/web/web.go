// Package web holds the operator dashboard served at / by bidpulse: plain
// HTML, CSS and JavaScript embedded in the binary, with no build step and
// nothing fetched from another origin.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"path"
)

//go:embed index.html app.js style.css
var files embed.FS

// File is one embedded file, ready to serve. Its fields must not be
// modified.
type File struct {
	Name        string
	ContentType string
	Body        []byte
	// ETag is a strong validator of Body, quoted as HTTP wants it.
	ETag string
}

var byName = map[string]*File{}

func init() {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
	}
	entries, err := files.ReadDir(".")
	if err != nil {
		panic("BUG: cannot list the embedded dashboard files: " + err.Error())
	}
	for _, e := range entries {
		body, err := files.ReadFile(e.Name())
		if err != nil {
			panic("BUG: cannot read the embedded dashboard file " + e.Name() + ": " + err.Error())
		}
		sum := sha256.Sum256(body)
		byName[e.Name()] = &File{
			Name:        e.Name(),
			ContentType: types[path.Ext(e.Name())],
			Body:        body,
			ETag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
	}
}

// Lookup returns the embedded file called name ("index.html", "app.js",
// "style.css"). Safe for concurrent use.
func Lookup(name string) (*File, bool) {
	f, ok := byName[name]
	return f, ok
}
