package codec

// Message is one rendered message ready for the wire after DATA's 354: the
// segments are CRLF-canonical, dot-stuffed and end with "\r\n.\r\n". Static
// segments are shared with the Template (never modify them); per-recipient
// bytes live in a pooled buffer owned by the Message. Call Release when the
// last byte has been written; never touch the Message after Release.
//
// (Skeleton: the template owner fills in fields and methods.)
type Message struct {
	Segs [][]byte
}
