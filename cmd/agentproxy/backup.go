package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/agentproxy/agentproxy/backup"
)

// exportCmd is `agentproxy export`: a workspace's keys, every type with its
// TTL, into a checksummed file.
func exportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("upstream", os.Getenv("AGENTPROXY_UPSTREAM"), "redis://[user:pass@]host:port[/db] or rediss://... to read")
	ws := fs.String("workspace", "", "the workspace to export (required)")
	out := fs.String("out", "", "the file to write (required; - for stdout)")
	prefix := fs.String("prefix", "deepagents", "key prefix (keyspace.prefix)")
	force := fs.Bool("force", false, "overwrite the output file if it exists")
	quiet := fs.Bool("quiet", false, "no progress lines")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: agentproxy export --upstream URL --workspace WS --out FILE [flags]\n\nWrites every key of the workspace (DUMP, with its TTL) to FILE, checksummed.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return helpOr2(err)
	}
	if *ws == "" || *out == "" {
		fs.Usage()
		return 2
	}
	rdb, err := backupClient(*url)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy export: %v\n", err)
		return 2
	}
	defer rdb.Close()
	w := stdout
	if *out != "-" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if *force {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		f, err := os.OpenFile(*out, flags, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "agentproxy export: %v (pass --force to overwrite)\n", err)
			return 2
		}
		defer f.Close()
		w = f
	}
	n, err := backup.Export(context.Background(), rdb, *prefix, *ws, w, backupProgress(stderr, *quiet, "exported"))
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy export: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "agentproxy export: %d keys of workspace %s written to %s\n", n, *ws, *out)
	return 0
}

// importCmd is `agentproxy import`: an export back into Redis.
func importCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("upstream", os.Getenv("AGENTPROXY_UPSTREAM"), "redis://[user:pass@]host:port[/db] or rediss://... to write")
	in := fs.String("in", "", "the export file (required)")
	replace := fs.Bool("replace", false, "overwrite keys that exist (default: refuse to start if any does)")
	verify := fs.Bool("verify", false, "read every key back and compare it with the file")
	quiet := fs.Bool("quiet", false, "no progress lines")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: agentproxy import --upstream URL --in FILE [--replace] [--verify]\n\nChecks the whole file first (a damaged or changed file restores nothing), then RESTOREs every key with its TTL.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return helpOr2(err)
	}
	if *in == "" {
		fs.Usage()
		return 2
	}
	rdb, err := backupClient(*url)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy import: %v\n", err)
		return 2
	}
	defer rdb.Close()
	open := func() (io.ReadCloser, error) { return os.Open(*in) }
	h, n, err := backup.Import(context.Background(), rdb, open, backup.Options{Replace: *replace, Verify: *verify, Progress: backupProgress(stderr, *quiet, "restored")})
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy import: %v\n", err)
		return 1
	}
	what := ""
	if *verify {
		what = ", verified"
	}
	fmt.Fprintf(stderr, "agentproxy import: %d keys of workspace %s restored%s\n", n, h.Workspace, what)
	return 0
}

func backupClient(url string) (*redis.Client, error) {
	if url == "" || url == "embedded" {
		return nil, errors.New("--upstream redis://host:port is required")
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

func backupProgress(w io.Writer, quiet bool, verb string) backup.Progress {
	if quiet {
		return nil
	}
	return func(keys int, bytes int64) {
		if bytes > 0 {
			fmt.Fprintf(w, "%s %d keys (%d bytes)\n", verb, keys, bytes)
		} else {
			fmt.Fprintf(w, "%s %d keys\n", verb, keys)
		}
	}
}

func helpOr2(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
