// Package wire holds what the proxy says on the wire in its own words:
// every error reply it makes (each starting with its code, SPEC §3, and
// saying what to do) and the small RESP builders the proxy and the domain
// commands share. Tests compare the errors byte for byte.
package wire

import (
	"errors"
	"io"
	"net"
	"os"

	"github.com/agentproxy/agentproxy/upstream"
)

// TryAgainDown is the TRYAGAIN for a command that found no connection to
// node: the breaker's state when it is open, else ErrTryAgainDown.
func TryAgainDown(node *upstream.Pool) string {
	if m := node.Refusal(); m != "" {
		return m
	}
	return ErrTryAgainDown
}

// Error replies, without the leading '-' and trailing CRLF.
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
	ErrSubscriptionLost  = "ERR the subscription's connection to Redis was lost (Redis failed or moved); this connection is closed: reconnect and subscribe again"
	ErrProtoSwitch       = "ERR cannot change the protocol version while subscribed through agentproxy; reconnect instead"
	ErrSelectInvalid     = "ERR value is not an integer or out of range"
	ErrNestedMulti       = "ERR MULTI calls can not be nested"
	ErrRESP3Unsupported  = "NOPROTO the upstream Redis does not speak RESP3"
	ErrHelloSyntax       = "ERR Syntax error in HELLO option '"
	ErrSyntax            = "ERR syntax error"
	ErrClientName        = "ERR Client names cannot contain spaces, newlines or special characters."
	ErrHelloNoAuth       = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	ErrWrongArityPrefix  = "ERR wrong number of arguments for '"
	ErrWrongAritySuffix  = "' command"

	// Access control.
	ErrNoAuthRequired = "NOAUTH Authentication required: AUTH <user> <password> first"
	ErrAuthLimited    = "ERR too many failed AUTH attempts for this user, on this connection or from this address; wait for auth.failure_window before trying again"
	ErrWSInvalid      = "ERR workspace names match [A-Za-z0-9_.-]{1,64}"
	ErrExecAbort      = "EXECABORT Transaction discarded because of previous errors."
	ErrKeysAmbiguous  = "BADKEY a keyword that introduces keys occurs more than once: Redis's key specification and the command read different keys; give it once"

	// Connection commands.
	ErrCachingOff = "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"
)

// CallError maps an upstream failure to the error each unanswered command
// of the batch receives. This is the one place Go errors become wire codes.
func CallError(err error) string {
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

// IsProtocolError reports whether err, from reading a client, is a
// protocol error (to answer) rather than the connection ending or failing.
func IsProtocolError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) &&
		!errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, io.ErrNoProgress) &&
		!errors.As(err, &ne) && !errors.As(err, &oe)
}
