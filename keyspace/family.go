package keyspace

import "strings"

// Families are the command families metrics count commands by: Redis's
// data-type and purpose ACL categories, the agent domain's families, the
// proxy's own commands, and "unknown" for names the table does not have.
// A bounded set: a metric label never carries what a client sent.
var Families = []string{"string", "hash", "list", "set", "sortedset", "stream", "bitmap", "hyperloglog", "geo",
	"pubsub", "scripting", "transaction", "connection", "keyspace", "server",
	"lock", "cache", "events", "ws", "todo", "file", "proxy", "unknown"}

// FamilyUnknown is the family of commands not in the table.
var FamilyUnknown = uint8(len(Families) - 1)

// familyCats are the ACL categories that name a family, most specific
// first (GEOADD is @geo and also a sorted-set write).
var familyCats = []struct {
	cat  ACLCat
	name string
}{
	{ACLPubsub, "pubsub"}, {ACLScripting, "scripting"}, {ACLTransaction, "transaction"}, {ACLGeo, "geo"},
	{ACLHyperloglog, "hyperloglog"}, {ACLBitmap, "bitmap"}, {ACLStream, "stream"}, {ACLHash, "hash"},
	{ACLList, "list"}, {ACLSet, "set"}, {ACLSortedset, "sortedset"}, {ACLString, "string"},
	{ACLConnection, "connection"}, {ACLAdmin, "server"}, {ACLKeyspace, "keyspace"},
}

// familyOf is the family of a table entry.
func familyOf(c *Command) uint8 {
	name := "server"
	parent, _, sub := cut(c.Name)
	switch {
	case c.Flags&Proxy != 0 && (!sub || parent == "proxy"):
		name = "proxy"
		if i := strings.IndexByte(c.Name, '.'); i > 0 {
			name = c.Name[:i]
		}
	default:
		for _, f := range familyCats {
			if c.ACL&f.cat != 0 {
				name = f.name
				break
			}
		}
	}
	for i, n := range Families {
		if n == name {
			return uint8(i)
		}
	}
	return FamilyUnknown
}

// Family is the index in Families of c's family (FamilyUnknown for nil).
func (c *Command) Family() uint8 {
	if c == nil {
		return FamilyUnknown
	}
	return c.family
}
