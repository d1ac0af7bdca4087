package filestore

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// Streaming uploads: FILE.BEGIN, FILE.CHUNK, FILE.COMMIT, FILE.ABORT. The
// parts go straight to Redis, re-cut into storage chunks under the
// upload's own generation (with a TTL, so an abandoned upload leaves
// nothing behind); the proxy keeps only the running checksum, newline
// counts and offset. Uploads live in the server, not the session, so an
// agent with a connection pool may send the parts on any connection.

// uploads is the proxy's table of unfinished uploads (kept in domain.Env,
// so every connection of the proxy sees it).
type uploads struct {
	mu sync.Mutex
	m  map[string]*upload
}

type upload struct {
	mu      sync.Mutex
	id, ws  string
	path    string
	k       fileKeys
	gen     string
	ifv     string
	token   string
	cs      int64
	size    int64
	next    int64 // the part number expected next
	nl      []int64
	last    byte
	sum     hash.Hash
	text    utf8Check
	expires time.Time
	failed  string // set when a part failed half-way: the upload is unusable
	closed  bool   // committed or aborted
	touched int64  // storage chunks written so far, the failed part's included
	// lastPart is the checksum of the last part stored, so a client whose
	// reply was lost may send it again.
	lastPart [sha1.Size]byte
}

type uploadsKey struct{}

// uploads is this proxy's table.
func (s req) uploads() *uploads {
	return s.Env.Value(uploadsKey{}, func() any { return &uploads{} }).(*uploads)
}

func (u *uploads) add(up *upload) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]*upload{}
	}
	now := time.Now()
	for id, x := range u.m { // drop expired uploads as new ones begin
		if now.After(x.expires) {
			delete(u.m, id)
		}
	}
	u.m[up.id] = up
}

// get finds an upload of workspace ws; take also removes it.
func (u *uploads) get(id, ws string, take bool) *upload {
	u.mu.Lock()
	defer u.mu.Unlock()
	up := u.m[id]
	if up == nil || up.ws != ws || time.Now().After(up.expires) {
		return nil
	}
	if take {
		delete(u.m, id)
	}
	return up
}

// lockUpload finds the upload id of this session's workspace and locks it
// (take also removes it from the table); nil, with the error answered,
// when there is none or it was committed or aborted meanwhile. The caller
// unlocks it.
func (s req) lockUpload(id []byte, take bool) *upload {
	up := s.uploads().get(string(id), s.Workspace, take)
	if up != nil {
		up.mu.Lock()
		if !up.closed {
			return up
		}
		up.mu.Unlock()
	}
	s.Out = wire.AppendError(s.Out, errNoUpload(id))
	return nil
}

func errNoUpload(id []byte) string {
	return "ERR no upload '" + wire.QuoteArg(id) + "' in this workspace (finished, aborted or expired: start again with FILE.BEGIN)"
}

// fileBegin: FILE.BEGIN <path> [IFVERSION v] [FENCE t] → an upload id.
func (s req) fileBegin(args [][]byte) {
	path, ok := s.filePath(args[0])
	if !ok {
		return
	}
	o, ok := s.fileOpts(args[1:], "FILE.BEGIN <path> [IFVERSION v] [FENCE token]")
	if !ok {
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	k := s.fileKeys(path)
	if why, err := f.clash(k, path); err != nil || why != "" {
		if err != nil {
			s.fileErr(err)
		} else {
			s.Out = wire.AppendError(s.Out, why)
		}
		return
	}
	r, err := f.cmd("INCR", k.gen)
	if err != nil {
		s.fileErr(err)
		return
	}
	var id [12]byte
	rand.Read(id[:])
	up := &upload{
		id: hex.EncodeToString(id[:]), ws: s.Workspace, path: path, k: k,
		gen: strings.TrimSpace(string(r[1:])), ifv: o.ifv, token: o.token,
		cs: int64(s.Env.Files.ChunkSize), sum: sha1.New(), expires: time.Now().Add(s.Env.Files.UploadTTL),
	}
	s.uploads().add(up)
	s.Out = redcon.AppendBulkString(s.Out, up.id)
}

// fileChunk: FILE.CHUNK <id> <n> <bytes> → bytes received so far.
func (s req) fileChunk(args [][]byte) {
	n, err := strconv.ParseInt(string(args[1]), 10, 64)
	if err != nil || n < 0 {
		s.Out = wire.AppendError(s.Out, "ERR the part number must be a whole number from 0, got '"+wire.QuoteArg(args[1])+"'")
		return
	}
	data := args[2]
	up := s.lockUpload(args[0], false)
	if up == nil {
		return
	}
	defer up.mu.Unlock()
	switch {
	case up.failed != "":
		s.Out = wire.AppendError(s.Out, "ERR this upload failed earlier ("+up.failed+"); start again with FILE.BEGIN")
		return
	case n == up.next-1 && up.lastPart == sha1.Sum(data):
		s.Out = redcon.AppendInt(s.Out, up.size) // a resent part (its reply was lost): already stored
		return
	case n != up.next:
		s.Out = wire.AppendError(s.Out, "ERR part "+strconv.FormatInt(n, 10)+" is out of order: expected part "+strconv.FormatInt(up.next, 10))
		return
	case up.size+int64(len(data)) > s.Env.Files.MaxBytes:
		s.Out = wire.AppendError(s.Out, "ERR the upload would exceed files.max_file_bytes ("+strconv.FormatInt(s.Env.Files.MaxBytes, 10)+")")
		return
	}
	f, ok := s.fstore(len(data) > fileHeadBytes)
	if !ok {
		return
	}
	defer f.close()
	// APPEND each piece to the storage chunk it falls in, and keep the
	// staged chunks expiring with the upload.
	ttl := strconv.FormatInt(max(1, time.Until(up.expires).Milliseconds()), 10)
	f.req, f.part = f.req[:0], f.part[:0]
	type piece struct {
		pre, post [2]int
		lo, hi    int64
		chunk     int64
		set       bool // the chunk's first piece: SET PX, else APPEND
	}
	var ps []piece
	for off := int64(0); off < int64(len(data)); {
		c := (up.size + off) / up.cs
		end := min(int64(len(data)), off+(c+1)*up.cs-(up.size+off))
		key := up.k.meta + ":v" + up.gen + ":chunk:" + strconv.FormatInt(c, 10)
		p := piece{lo: off, hi: end, chunk: c, set: (up.size+off)%up.cs == 0}
		p.pre[0] = len(f.req)
		// A chunk's first piece creates it with the upload's TTL (SET PX,
		// atomically); later pieces APPEND, which keeps the TTL.
		if (up.size+off)%up.cs == 0 {
			f.req = appendBulkHeader(append(f.req, "*5\r\n$3\r\nSET\r\n"...), len(key))
		} else {
			f.req = appendBulkHeader(append(f.req, "*3\r\n$6\r\nAPPEND\r\n"...), len(key))
		}
		f.req = appendBulkHeader(append(append(f.req, key...), '\r', '\n'), int(end-off))
		p.pre[1], p.post[0] = len(f.req), len(f.req)
		f.req = append(f.req, '\r', '\n')
		if (up.size+off)%up.cs == 0 {
			f.req = appendBulkHeader(append(f.req, "$2\r\nPX\r\n"...), len(ttl))
			f.req = append(append(f.req, ttl...), '\r', '\n')
		}
		up.touched = max(up.touched, c+1)
		p.post[1] = len(f.req)
		ps = append(ps, p)
		off = end
	}
	for _, p := range ps {
		f.part = append(f.part, f.req[p.pre[0]:p.pre[1]], data[p.lo:p.hi], f.req[p.post[0]:p.post[1]])
	}
	cmds := len(ps)
	if cmds > 0 {
		r, err := f.send(cmds, f.part...)
		// Check every piece landed where it belongs: a chunk that expired
		// or was evicted between parts would be recreated by APPEND
		// holding only the later bytes.
		for _, p := range ps {
			if err != nil {
				break
			}
			v, m, perr := domain.ParseReply(r)
			want := strconv.FormatInt(up.size+p.hi-p.chunk*up.cs, 10)
			switch {
			case perr != nil:
				err = replyError("ERR unexpected reply storing a part")
			case v.Typ == '-':
				err = replyError(v.Str)
			case p.set && v.Typ != '+', !p.set && (v.Typ != ':' || v.Str != want):
				err = replyError("ERR staged chunk " + strconv.FormatInt(p.chunk, 10) + " of the upload was lost (expired or evicted)")
			}
			r = r[m:]
		}
		if err != nil {
			if !errors.Is(err, upstream.ErrNotSent) && !errors.Is(err, upstream.ErrUnavailable) {
				up.failed = "a part was not stored: " + err.Error()
			}
			s.fileErr(err)
			return
		}
	}
	// The part is stored: account for it.
	up.sum.Write(data)
	up.text.Write(data)
	for off := int64(0); off < int64(len(data)); {
		c := (up.size + off) / up.cs
		end := min(int64(len(data)), off+((c+1)*up.cs-(up.size+off)))
		for int64(len(up.nl)) <= c {
			up.nl = append(up.nl, 0)
		}
		for _, b := range data[off:end] {
			if b == '\n' {
				up.nl[c]++
			}
		}
		off = end
	}
	if len(data) > 0 {
		up.last = data[len(data)-1]
	}
	up.size += int64(len(data))
	up.next++
	up.lastPart = sha1.Sum(data)
	s.Out = redcon.AppendInt(s.Out, up.size)
}

func appendBulkHeader(b []byte, n int) []byte {
	return append(strconv.AppendInt(append(b, '$'), int64(n), 10), '\r', '\n')
}

// fileCommit: FILE.COMMIT <id> [SHA1 hex] publishes the upload.
func (s req) fileCommit(args [][]byte) {
	want := ""
	switch {
	case len(args) == 3 && keyspace.EqFold(args[1], "sha1"):
		want = strings.ToLower(string(args[2]))
		if _, err := hex.DecodeString(want); err != nil || len(want) != 40 {
			s.Out = wire.AppendError(s.Out, "ERR SHA1 must be 40 hex digits, got '"+wire.QuoteArg(args[2])+"'")
			return
		}
	case len(args) != 1:
		s.Out = wire.AppendError(s.Out, "ERR syntax error: FILE.COMMIT <id> [SHA1 hex]")
		return
	}
	up := s.lockUpload(args[0], true)
	if up == nil {
		return
	}
	defer up.mu.Unlock()
	f, ok := s.fstore(false)
	if !ok {
		s.uploads().add(up) // nothing was sent: the client may commit again
		return
	}
	defer f.close()
	up.closed = true
	c := content{size: up.size, sha1: hex.EncodeToString(up.sum.Sum(nil)), encoding: "utf-8"}
	if !up.text.Valid() {
		c.encoding = "binary"
	}
	var nl []byte
	for i, n := range up.nl {
		if i > 0 {
			nl = append(nl, ',')
		}
		nl = strconv.AppendInt(nl, n, 10)
		c.lines += n
	}
	c.nl = string(nl)
	if up.size > 0 && up.last != '\n' {
		c.lines++
	}
	switch {
	case up.failed != "":
		s.dropStaged(f, up)
		s.Out = wire.AppendError(s.Out, "ERR this upload failed earlier ("+up.failed+"); start again with FILE.BEGIN")
		return
	case want != "" && want != c.sha1:
		s.dropStaged(f, up)
		s.Out = wire.AppendError(s.Out, "ERR SHA1 mismatch: the uploaded content has "+c.sha1+", not "+wire.QuoteArg(args[2])+"; the upload is discarded")
		return
	}
	v, err := f.commit(up.k, up.path, up.ifv, up.token, "file.write", "FILE.COMMIT", up.gen, &c, int(up.cs))
	var re replyError
	if errors.Is(err, upstream.ErrNotSent) || errors.Is(err, upstream.ErrUnavailable) ||
		errors.As(err, &re) && strings.HasPrefix(string(re), "LOCKED") {
		// TRYAGAIN (the commit never reached Redis), or a lock holds it
		// off (the script kept the staged chunks): commit again later.
		up.closed = false
		s.uploads().add(up)
	}
	if err != nil {
		s.fileErr(err)
		return
	}
	s.writeReply(up.path, v, &c)
}

// dropStaged deletes an upload's staged chunks.
func (s req) dropStaged(f *fstore, up *upload) {
	if up.touched == 0 {
		return
	}
	f.req = f.req[:0]
	for c := int64(0); c < up.touched; c++ {
		f.req = upstream.AppendCommand(f.req, "DEL", up.k.meta+":v"+up.gen+":chunk:"+strconv.FormatInt(c, 10))
	}
	f.send(int(up.touched), f.req) // one round trip; what is missed expires with the upload TTL
}

// fileAbort: FILE.ABORT <id>.
func (s req) fileAbort(args [][]byte) {
	up := s.lockUpload(args[0], true)
	if up == nil {
		return
	}
	defer up.mu.Unlock()
	up.closed = true
	if f, ok := s.fstore(false); ok {
		s.dropStaged(f, up)
		f.close()
		s.Out = redcon.AppendOK(s.Out)
	}
}

// utf8Check tells whether a stream of bytes is valid UTF-8, across writes
// that may split a character.
type utf8Check struct {
	bad   bool
	carry [utf8.UTFMax]byte
	n     int
}

func (u *utf8Check) Write(p []byte) {
	if u.bad {
		return
	}
	if u.n > 0 {
		for len(p) > 0 && u.n < utf8.UTFMax && !utf8.FullRune(u.carry[:u.n]) {
			u.carry[u.n] = p[0]
			u.n++
			p = p[1:]
		}
		if !utf8.FullRune(u.carry[:u.n]) {
			return
		}
		if r, size := utf8.DecodeRune(u.carry[:u.n]); r == utf8.RuneError && size <= 1 || size != u.n {
			u.bad = true
			return
		}
		u.n = 0
	}
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		u.bad = true
		return
	}
	u.n = copy(u.carry[:], p[cut:])
}

// Valid reports whether everything written was valid UTF-8.
func (u *utf8Check) Valid() bool { return !u.bad && u.n == 0 }
