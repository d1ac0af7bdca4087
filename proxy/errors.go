package proxy

import (
	"errors"

	"github.com/agentproxy/agentproxy/upstream"
)

// Wire errors the proxy answers itself. Each starts with its code (SPEC §3)
// and says what to do. Tests compare them byte for byte.
const (
	ErrTryAgainDown      = "TRYAGAIN upstream Redis is unreachable; the command was not sent, retry shortly"
	ErrTryAgainNotSent   = "TRYAGAIN the command was not sent upstream; retry shortly"
	ErrTryAgainDedicated = "TRYAGAIN this workspace holds as many dedicated upstream connections as it may (upstream.max_dedicated_per_workspace: transactions, blocking commands, subscriptions, bulk transfers); retry when some end"
	ErrUncertain         = "UNCERTAIN the command was sent to Redis but the connection was lost before the reply; it may or may not have run, retry only if it is idempotent"
	ErrUncertainTimeout  = "UNCERTAIN Redis did not reply within the read timeout (upstream.read_timeout); the command may or may not have run, retry only if it is idempotent"
	ErrMaxClients        = "ERR max number of clients reached"
	ErrOutputLimit       = "ERR reply exceeds the proxy's client output limit (listen.max_output_bytes); connection closed"
	ErrBudgetReply       = "ERR the proxy's memory budget for requests and replies is exhausted (listen.memory_budget); this connection holds one of the largest replies and is closed"
	ErrClientReply       = "ERR CLIENT REPLY is not supported through agentproxy: every command gets its reply"
	ErrUnsupported       = "ERR this command cannot run through agentproxy (it takes over the Redis connection)"
	ErrNoAuth            = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	ErrWrongPass         = "WRONGPASS invalid username-password pair or user is disabled."
	ErrNoProto           = "NOPROTO unsupported protocol version"
	ErrProtoSwitch       = "ERR cannot change the protocol version while subscribed through agentproxy; reconnect instead"
	ErrSelectInvalid     = "ERR value is not an integer or out of range"
	ErrNestedMulti       = "ERR MULTI calls can not be nested"
	ErrRESP3Unsupported  = "NOPROTO the upstream Redis does not speak RESP3"
	ErrHelloSyntax       = "ERR Syntax error in HELLO option '"
	errWrongArityPrefix  = "ERR wrong number of arguments for '"
	errWrongAritySuffix  = "' command"
)

// callError maps an upstream failure to the error each unanswered command
// of the batch receives. This is the one place Go errors become wire codes.
func callError(err error) string {
	switch {
	case errors.Is(err, upstream.ErrNotSent), errors.Is(err, upstream.ErrUnavailable):
		return ErrTryAgainNotSent
	case errors.Is(err, upstream.ErrTimeout):
		return ErrUncertainTimeout
	case errors.Is(err, upstream.ErrOutputFull):
		return ErrOutputLimit
	case errors.Is(err, upstream.ErrBudget):
		return ErrBudgetReply
	default:
		return ErrUncertain
	}
}
