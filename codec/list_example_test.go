package codec_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/spate-mta/spate/codec"
)

func ExampleListReader() {
	list := "email,name,attributes\n" +
		"ann@Example.com,Ann,\"{\"\"city\"\":\"\"Paris\"\"}\"\n" +
		"not-an-address,Bob,{}\n" +
		"ANN@example.com ,Ann again,{}\n"
	lr, err := codec.NewListReader(strings.NewReader(list), codec.ListOptions{
		Name:          "list.csv",
		AttributeKeys: []string{"city"},
		OnBadRow:      func(e *codec.RowError) { fmt.Println("skip:", e) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(lr.Columns())
	for {
		r, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%d %d %s %q %q\n", r.Row, r.Line, r.Email, r.Values[1], r.Values[3])
	}
	fmt.Printf("%+v\n", lr.Stats())
	// Output:
	// [email name attributes city]
	// 0 2 ann@example.com "Ann" "Paris"
	// skip: list.csv:3: invalid address "not-an-address": no '@'
	// skip: list.csv:4: duplicate address "ANN@example.com" (an earlier row has the same address, ignoring ASCII case)
	// {Rows:3 Good:1 Bad:1 Duplicates:1}
}
