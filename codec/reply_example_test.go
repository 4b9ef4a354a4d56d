package codec_test

import (
	"errors"
	"fmt"

	"github.com/spate-mta/spate/codec"
)

func ExampleParseReply() {
	in := []byte("250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n550 5.1.1 no such user\r\n")
	for len(in) > 0 {
		r, n, err := codec.ParseReply(in)
		if errors.Is(err, codec.ErrIncomplete) {
			break // wait for more bytes
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		in = in[n:]
		if r.Permanent() {
			fmt.Println(codec.NewReplyError(codec.CmdRcpt, r))
			continue
		}
		caps := codec.ParseEHLO(r)
		fmt.Println(r.Code, caps.Pipelining, caps.Size)
		for text := range r.Lines {
			fmt.Printf("%s|", text)
		}
		fmt.Println()
	}
	// Output:
	// 250 true 1000
	// mx.example.com|PIPELINING|SIZE 1000|
	// RCPT TO: 550 5.1.1 no such user
}
