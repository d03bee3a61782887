package websocket

// ProtocolTokenForTest is protocolToken, for the fuzz test.
var ProtocolTokenForTest = protocolToken
