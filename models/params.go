package models

// Param is one named input of a Factor, as shown by /v1/multiplier?explain=1:
// a count (impressions, clicks, ...) or a rate in [0, 1].
//
// Name is expected to be a constant of the policy, so that filling a Param
// allocates nothing.
type Param struct {
	Name  string
	Value float64
}

// Factor is one multiplicative term of a multiplier, with the inputs it was
// computed from.
//
// Inputs is a fixed array so that a Result lives on the stack or in a reused
// buffer and filling it allocates nothing; only Inputs[:NInputs] is meaningful.
type Factor struct {
	Name    string
	Value   float64
	Inputs  [MaxInputs]Param
	NInputs int
}

// MaxInputs is the number of inputs a Factor can hold.
const MaxInputs = 10

// AddInput appends the input name=value to f.
//
// It panics if f already holds len(f.Inputs) inputs: policies add a fixed
// number of inputs, so running out is a programming error.
func (f *Factor) AddInput(name string, value float64) {
	if f.NInputs >= len(f.Inputs) {
		panic("BUG: too many inputs in factor " + f.Name)
	}
	f.Inputs[f.NInputs] = Param{Name: name, Value: value}
	f.NInputs++
}

// Input returns the value of the input called name, and whether f has it.
func (f *Factor) Input(name string) (float64, bool) {
	for i := 0; i < f.NInputs; i++ {
		if f.Inputs[i].Name == name {
			return f.Inputs[i].Value, true
		}
	}
	return 0, false
}
