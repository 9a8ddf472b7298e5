package fifo

// NextRequest is nextRequest, for tests.
var NextRequest = nextRequest
