// Package events serves EVENTS.READ: the workspace's durable event log
// (<ws>:events:log, a stream every domain write appends to).
package events

import (
	"strconv"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// req is a domain request as this family's handlers see it.
type req struct{ *domain.Req }

func init() {
	domain.RegisterTx("events.read", "coord", func(r *domain.Req, a [][]byte) { req{r}.eventsRead(a) }, domain.TxAsIs)
}

// eventsRead: EVENTS.READ [AFTER id] [COUNT n] [BLOCK ms] reads the
// workspace's event log (XREAD's reply); BLOCK runs on a dedicated
// connection like any blocking command.
func (s req) eventsRead(args [][]byte) {
	after, count, block := "0-0", "100", ""
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error: EVENTS.READ [AFTER id] [COUNT n] [BLOCK ms]")
			return
		}
		v := args[i+1]
		switch {
		case keyspace.EqFold(args[i], "after"):
			after = string(v)
		case keyspace.EqFold(args[i], "count"):
			if _, ok := s.PosInt(v, "COUNT", 100000); !ok {
				return
			}
			count = string(v)
		case keyspace.EqFold(args[i], "block"):
			if n, err := strconv.ParseInt(string(v), 10, 64); err != nil || n < 0 {
				s.Out = wire.AppendError(s.Out, "ERR BLOCK must be milliseconds (0: forever), got '"+wire.QuoteArg(v)+"'")
				return
			}
			block = string(v)
		default:
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(args[i])+"': EVENTS.READ [AFTER id] [COUNT n] [BLOCK ms]")
			return
		}
	}
	argv := []string{"XREAD", "COUNT", count}
	if block != "" {
		argv = append(argv, "BLOCK", block)
	}
	argv = append(argv, "STREAMS", s.Key("events", "log"), after)
	raw := upstream.AppendCommand(nil, argv...)
	if block != "" {
		bargs := make([][]byte, len(argv))
		for i, a := range argv {
			bargs[i] = []byte(a)
		}
		s.Up.Blocking(s.Req, bargs, raw)
		return
	}
	s.Up.Shared(s.Req, raw, 1)
}
