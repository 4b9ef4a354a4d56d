package demo

import _ "embed"

// Newsletter is the demo's message template: a multipart text+HTML
// newsletter with {{email}}, {{first_name}}, {{city}}, {{plan}} and
// {{unsubscribe_url}} merge fields (a copy of codec/testdata/newsletter.eml).
//
//go:embed newsletter.eml
var Newsletter []byte
