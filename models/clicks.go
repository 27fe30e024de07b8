package models

// HistoryBlocks is the number of 24-hour blocks a ClickHistory keeps.
const HistoryBlocks = 32

// ClickHistory holds a campaign's clicks in consecutive 24-hour blocks,
// for the conversions that clicks older than the 24h window still bring:
// with conversions counted at their own time and delays of days, the
// conversions of a window depend on the click volume of past weeks.
// CampaignState.Tick records a block every 24 hours from the 24h span.
// Plain data.
type ClickHistory struct {
	// Blocks is a ring; block(0), the newest, ends at EndMs, block(k) 24k
	// hours earlier.
	Blocks [HistoryBlocks]uint64 `json:"blocks"`
	Head   int                   `json:"head"`
	N      int                   `json:"n"`
	EndMs  int64                 `json:"end_ms"`
}

// Push records the clicks of the 24 hours ending at endMs as the newest
// block.
func (h *ClickHistory) Push(endMs int64, clicks uint64) {
	h.Head = (h.Head + 1) % HistoryBlocks
	h.Blocks[h.Head] = clicks
	h.EndMs = endMs
	if h.N < HistoryBlocks {
		h.N++
	}
}

// block returns block k (0: newest).
func (h *ClickHistory) block(k int) uint64 {
	return h.Blocks[(h.Head-k%HistoryBlocks+HistoryBlocks)%HistoryBlocks]
}
