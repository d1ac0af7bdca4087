package keyspace

// RFlag is a Redis command flag from COMMAND INFO.
type RFlag uint32

// Redis command flags.
const (
	RWrite RFlag = 1 << iota
	RReadonly
	RDenyoom
	RAdmin
	RPubsub
	RNoscript
	RBlocking
	RLoading
	RStale
	RSkipMonitor
	RSkipSlowlog
	RAsking
	RFast
	RNoAuth
	RMayReplicate
	RSentinel
	ROnlySentinel
	RNoMandatoryKeys
	RNoAsyncLoading
	RNoMulti
	RMovablekeys
	RAllowBusy
	RModule
)

// ACLCat is a Redis ACL category from COMMAND INFO.
type ACLCat uint32

// Redis ACL categories.
const (
	ACLKeyspace ACLCat = 1 << iota
	ACLRead
	ACLWrite
	ACLSet
	ACLSortedset
	ACLList
	ACLHash
	ACLString
	ACLBitmap
	ACLHyperloglog
	ACLGeo
	ACLStream
	ACLPubsub
	ACLAdmin
	ACLFast
	ACLSlow
	ACLBlocking
	ACLDangerous
	ACLConnection
	ACLTransaction
	ACLScripting
)

// KFlag is a key-spec flag.
type KFlag uint16

// Key-spec flags (Redis 7 key specs).
const (
	KRW KFlag = 1 << iota
	KRO
	KOW
	KRM
	KAccess
	KUpdate
	KInsert
	KDelete
	KNotKey
	KIncomplete
	KVariableFlags
)

// Where a key spec starts looking and how it finds keys.
const (
	BeginUnknown uint8 = iota
	BeginIndex
	BeginKeyword
)

// How a key spec finds keys once it has a starting point.
const (
	FindUnknown uint8 = iota
	FindRange
	FindKeynum
)

// KeySpec is one Redis 7 key specification.
type KeySpec struct {
	Flags     KFlag
	Begin     uint8
	Index     int
	Keyword   string
	StartFrom int
	Find      uint8
	LastKey   int
	KeyStep   int
	Limit     int
	KeyNumIdx int
	FirstKey  int
}

// Spec is a command as Redis describes it.
type Spec struct {
	Name      string // lowercase; subcommands are "parent|sub"
	Arity     int
	Redis     RFlag
	ACL       ACLCat
	Keys      []KeySpec
	Container bool // has subcommands
}
