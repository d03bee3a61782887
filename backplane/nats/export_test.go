package nats

// Exported for the black-box tests.
var (
	EscapeTopic   = escapeTopic
	UnescapeTopic = unescapeTopic
	KeyToken      = keyToken
)

// Forgot receives after the node dropped what it remembered about the
// streams' contents.
func (b *Backplane) Forgot() <-chan struct{} { return b.forgot }
