// gocheck opens a bbolt file read-only with the real bbolt library and checks it.
//
// It runs bbolt's own consistency check (tx.Check: page reachability, double frees, page
// types), then walks every bucket with bbolt cursors, checking that keys are strictly
// increasing, and prints one JSON object on stdout: key and bucket counts per root bucket,
// bbolt's bucket statistics, and a SHA-256 digest over every entry (the test computes the same
// digest with the Python reader). Exit status 1 when anything is wrong, 2 on usage errors.
//
// Build offline against Debian's packaged sources:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o gocheck main.go
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

type rootStats struct {
	Keys          int  `json:"keys"`
	Buckets       int  `json:"buckets"`
	Inline        bool `json:"inline"`
	BranchPageN   int  `json:"branch_pages"`
	LeafPageN     int  `json:"leaf_pages"`
	LeafOverflowN int  `json:"leaf_overflow_pages"`
	InlineBucketN int  `json:"inline_buckets"`
	Depth         int  `json:"depth"`
}

type report struct {
	PageSize int                   `json:"page_size"`
	TxID     int                   `json:"txid"`
	Keys     int                   `json:"keys"`
	Buckets  int                   `json:"buckets"`
	Digest   string                `json:"digest"`
	Roots    map[string]*rootStats `json:"roots"`
	Errors   []string              `json:"errors"`
}

// feed writes one entry of the digest stream: kind (0 value, 1 bucket start, 2 bucket end),
// then the length-prefixed key and, for values, the length-prefixed value.
func feed(h hash.Hash, kind byte, key, value []byte) {
	var n [8]byte
	h.Write([]byte{kind})
	if kind == 2 {
		return
	}
	binary.LittleEndian.PutUint32(n[:4], uint32(len(key)))
	h.Write(n[:4])
	h.Write(key)
	if kind == 0 {
		binary.LittleEndian.PutUint64(n[:], uint64(len(value)))
		h.Write(n[:])
		h.Write(value)
	}
}

func walk(b *bolt.Bucket, path string, h hash.Hash, st *rootStats, rep *report) {
	c := b.Cursor()
	var prev []byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: key %q not after %q", path, k, prev))
		}
		prev = append(prev[:0], k...)
		if v == nil {
			child := b.Bucket(k)
			if child == nil {
				rep.Errors = append(rep.Errors, fmt.Sprintf("%s: nil value for %q is not a bucket", path, k))
				continue
			}
			st.Buckets++
			rep.Buckets++
			feed(h, 1, k, nil)
			walk(child, path+"/"+string(k), h, st, rep)
			feed(h, 2, nil, nil)
		} else {
			st.Keys++
			rep.Keys++
			feed(h, 0, k, v)
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gocheck FILE")
		os.Exit(2)
	}
	db, err := bolt.Open(os.Args[1], 0o400, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	defer db.Close()
	rep := report{PageSize: db.Info().PageSize, Roots: map[string]*rootStats{}, Errors: []string{}}
	h := sha256.New()
	err = db.View(func(tx *bolt.Tx) error {
		rep.TxID = tx.ID()
		for cerr := range tx.Check() {
			rep.Errors = append(rep.Errors, "check: "+cerr.Error())
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			st := &rootStats{}
			s := b.Stats()
			st.BranchPageN, st.LeafPageN, st.LeafOverflowN = s.BranchPageN, s.LeafPageN, s.LeafOverflowN
			st.InlineBucketN, st.Depth = s.InlineBucketN, s.Depth
			st.Inline = b.Root() == 0
			rep.Roots[string(name)] = st
			feed(h, 1, name, nil)
			walk(b, string(name), h, st, &rep)
			feed(h, 2, nil, nil)
			return nil
		})
	})
	if err != nil {
		rep.Errors = append(rep.Errors, "view: "+err.Error())
	}
	rep.Digest = hex.EncodeToString(h.Sum(nil))
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	if len(rep.Errors) > 0 {
		for _, e := range rep.Errors {
			fmt.Fprintln(os.Stderr, e)
		}
		os.Exit(1)
	}
}
