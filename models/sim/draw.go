package sim

import (
	"math"
	"time"

	"github.com/bidpulse/bidpulse/models"
)

// poisson draws a Poisson number of mean lambda: by inversion for small
// means, from the normal approximation above 30.
func poisson(r *models.Rand, lambda float64) uint64 {
	if !(lambda > 0) {
		return 0
	}
	if lambda > 30 {
		x := math.Round(lambda + math.Sqrt(lambda)*r.NormFloat64())
		if x < 0 {
			return 0
		}
		return uint64(x)
	}
	l := math.Exp(-lambda)
	k := uint64(0)
	p := r.Float64()
	for p > l {
		k++
		p *= r.Float64()
	}
	return k
}

// binomial draws a Binomial(n, p) number: Bernoulli trials for small n,
// Poisson for rare successes, the normal approximation otherwise.
func binomial(r *models.Rand, n uint64, p float64) uint64 {
	switch {
	case n == 0 || !(p > 0):
		return 0
	case p >= 1:
		return n
	case n < 40:
		k := uint64(0)
		for i := uint64(0); i < n; i++ {
			if r.Float64() < p {
				k++
			}
		}
		return k
	}
	mean := float64(n) * p
	if mean < 20 {
		return min(poisson(r, mean), n)
	}
	if float64(n)*(1-p) < 20 {
		return n - min(poisson(r, float64(n)*(1-p)), n)
	}
	x := math.Round(mean + math.Sqrt(mean*(1-p))*r.NormFloat64())
	return uint64(math.Min(math.Max(x, 0), float64(n)))
}

// phi is the standard normal distribution function.
func phi(x float64) float64 {
	return 0.5 * math.Erfc(-x/math.Sqrt2)
}

// market is a second-price auction against a log-normal competing price.
type market struct {
	mu, sigma float64
}

// win returns the chance that bid wins and the expected price paid when
// it does.
func (m market) win(bid float64) (p, price float64) {
	if !(bid > 0) {
		return 0, 0
	}
	z := (math.Log(bid) - m.mu) / m.sigma
	p = phi(z)
	if p < 1e-12 {
		return 0, 0
	}
	price = math.Exp(m.mu+m.sigma*m.sigma/2) * phi(z-m.sigma) / p
	return p, price
}

// delay draws a conversion delay from the mixture; 0 when it is empty.
func delay(r *models.Rand, mix []DelayComponent) time.Duration {
	if len(mix) == 0 {
		return 0
	}
	total := 0.0
	for _, c := range mix {
		total += c.Share
	}
	u := r.Float64() * total
	c := mix[len(mix)-1]
	for _, x := range mix {
		if u < x.Share {
			c = x
			break
		}
		u -= x.Share
	}
	return time.Duration(r.ExpFloat64() * float64(c.Mean))
}

// spearman returns the Spearman rank correlation of x and y (average ranks
// for ties); 0 with fewer than 2 values.
func spearman(x, y []float64) float64 {
	n := len(x)
	if n < 2 || len(y) != n {
		return 0
	}
	rx, ry := ranks(x), ranks(y)
	var mx, my float64
	for i := 0; i < n; i++ {
		mx += rx[i]
		my += ry[i]
	}
	mx /= float64(n)
	my /= float64(n)
	var sxy, sxx, syy float64
	for i := 0; i < n; i++ {
		dx, dy := rx[i]-mx, ry[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}

func ranks(v []float64) []float64 {
	n := len(v)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	// Insertion sort: the simulator ranks a handful of placements.
	for i := 1; i < n; i++ {
		for j := i; j > 0 && v[idx[j]] < v[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	r := make([]float64, n)
	for i := 0; i < n; {
		j := i
		for j+1 < n && v[idx[j+1]] == v[idx[i]] {
			j++
		}
		avg := float64(i+j)/2 + 1
		for k := i; k <= j; k++ {
			r[idx[k]] = avg
		}
		i = j + 1
	}
	return r
}
