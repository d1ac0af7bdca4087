// Package all registers every family of domain commands in the command
// table; a program that serves them imports it for its side effect.
package all

import (
	_ "github.com/agentproxy/agentproxy/domain/cache"     // CACHE.*
	_ "github.com/agentproxy/agentproxy/domain/events"    // EVENTS.*
	_ "github.com/agentproxy/agentproxy/domain/filestore" // FILE.*
	_ "github.com/agentproxy/agentproxy/domain/locks"     // LOCK.*
	_ "github.com/agentproxy/agentproxy/domain/todos"     // TODO.*
	_ "github.com/agentproxy/agentproxy/domain/wsinfo"    // WS.INFO
)
