"""The planner's search state and its moves, compiled with numba.

The state holds the decision variables (admission day, room and theatre per patient; the nurse
of each room in each shift) and every count the costs are made of (who is in which room on
which day, workload per room-shift and per nurse-shift, skill-level histograms, distinct nurses
per patient, theatre and surgeon minutes), so that a move updates only what it touches and its
cost delta is exact. `comp` holds the unweighted cost parts in `COST_PARTS` order, then the
number of mandatory patients not admitted (the only hard constraint the search ever relaxes:
every other one is checked before a move and a move that would break it is not made).

Nurses: every room has a working nurse in every shift where any nurse works (a nurse covering an
empty room costs nothing), so a room can never be left uncovered by a patient move.

Everything here is plain functions over a `Problem` and a `State` namedtuple of arrays so numba
can compile them ahead of use and cache them on disk (`cache=True`).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from allocator.planning.model import Instance

__all__ = ["MANDATORY_PENALTY", "Problem", "State", "make_problem", "new_state"]

# Cost of one mandatory patient not admitted while the search runs (never written as feasible).
MANDATORY_PENALTY = 1_000_000

Problem = namedtuple("Problem", [
    "D", "spd", "T", "P", "PP", "R", "NOT", "NS", "N", "AG", "L",
    "gender", "age", "los", "wl", "sk", "mand", "rel", "last", "dur", "surg",
    "incomp", "compat", "ncompat", "cap", "ot_av", "s_max", "nskill", "nmax", "nworks",
    "avail", "navail", "w",
])

State = namedtuple("State", [
    "adm", "room", "ot", "rd_cnt", "rd_g", "rd_age", "rd_mem", "rs_load", "rs_skh", "nurse_of",
    "n_load", "pn_cnt", "p_dist", "ot_load", "ot_cnt", "s_load", "s_ot", "s_nots", "comp",
])


def make_problem(inst: Instance) -> Problem:
    P, R, T = inst.n_patients, inst.n_rooms, inst.n_shifts
    compat = np.zeros((P, R), dtype=np.int64)
    ncompat = np.zeros(P, dtype=np.int64)
    for p in range(P):
        rooms = np.flatnonzero(~inst.incompatible[p])
        compat[p, : len(rooms)] = rooms
        ncompat[p] = len(rooms)
    avail = np.zeros((T, max(1, inst.n_nurses)), dtype=np.int64)
    navail = np.zeros(T, dtype=np.int64)
    for s in range(T):
        nurses = np.flatnonzero(inst.nurse_works[:, s])
        avail[s, : len(nurses)] = nurses
        navail[s] = len(nurses)
    return Problem(
        inst.days, inst.shifts_per_day, T, P, len(inst.person_ids), R, inst.n_theatres, len(inst.surgeon_ids),
        inst.n_nurses, len(inst.age_groups), inst.skill_levels,
        inst.gender, inst.age, inst.length_of_stay, inst.workload, inst.skill_required,
        inst.mandatory, inst.release_day, inst.last_day, inst.surgery_duration, inst.surgeon,
        inst.incompatible, compat, ncompat, inst.room_capacity, inst.theatre_availability, inst.surgeon_max,
        inst.nurse_skill, inst.nurse_max_load, inst.nurse_works, avail, navail, inst.weights.astype(np.int64),
    )


def new_state(pb: Problem, occupants_per_room_day: int) -> State:
    D, T, R = pb.D, pb.T, pb.R
    width = int(pb.cap.max(initial=0)) + occupants_per_room_day + 1
    z = np.zeros
    return State(
        adm=np.full(pb.PP, -1, dtype=np.int64), room=np.full(pb.PP, -1, dtype=np.int64),
        ot=np.full(pb.P, -1, dtype=np.int64),
        rd_cnt=z((R, D), np.int64), rd_g=z((R, D, 2), np.int64), rd_age=z((R, D, pb.AG), np.int64),
        rd_mem=np.full((R, D, width), -1, dtype=np.int64),
        rs_load=z((R, T), np.int64), rs_skh=z((R, T, pb.L), np.int64),
        nurse_of=np.full((R, T), -1, dtype=np.int64), n_load=z((pb.N, T), np.int64),
        pn_cnt=z((pb.PP, max(1, pb.N)), np.int32), p_dist=z(pb.PP, np.int64),
        ot_load=z((pb.NOT, D), np.int64), ot_cnt=z((pb.NOT, D), np.int64), s_load=z((pb.NS, D), np.int64),
        s_ot=z((pb.NS, D, pb.NOT), np.int64), s_nots=z((pb.NS, D), np.int64),
        # nobody admitted yet: every optional patient counts as left out, every mandatory one as missing
        comp=np.array([0, 0, 0, 0, 0, 0, 0, int((~pb.mand).sum()), int(pb.mand.sum())], dtype=np.int64),
    )


# ---------------------------------------------------------------------------- primitives


@njit(cache=True)
def total_cost(pb, st):
    c = 0
    for i in range(8):
        c += pb.w[i] * st.comp[i]
    return c + MANDATORY_PENALTY * st.comp[8]


@njit(cache=True)
def _age_spread(st, r, d, AG):
    lo = -1
    hi = -1
    for a in range(AG):
        if st.rd_age[r, d, a] > 0:
            if lo < 0:
                lo = a
            hi = a
    return 0 if lo < 0 else hi - lo


@njit(cache=True)
def _excess(pb, n, s, load):
    e = load - pb.nmax[n, s]
    return e if e > 0 else 0


@njit(cache=True)
def _shortfall(pb, st, r, s, level):
    c = 0
    for q in range(level + 1, pb.L):
        c += (q - level) * st.rs_skh[r, s, q]
    return c


@njit(cache=True)
def add_person(pb, st, p, d, r, t):
    """Put person p in room r from day d (and in theatre t on day d if p is a patient)."""
    st.adm[p] = d
    st.room[p] = r
    end = min(pb.D, d + pb.los[p])
    for day in range(d, end):
        old = _age_spread(st, r, day, pb.AG)
        st.rd_mem[r, day, st.rd_cnt[r, day]] = p
        st.rd_cnt[r, day] += 1
        st.rd_g[r, day, pb.gender[p]] += 1
        st.rd_age[r, day, pb.age[p]] += 1
        st.comp[0] += _age_spread(st, r, day, pb.AG) - old
        for k in range(pb.spd):
            s = day * pb.spd + k
            off = s - d * pb.spd
            w = pb.wl[p, off]
            q = pb.sk[p, off]
            st.rs_load[r, s] += w
            st.rs_skh[r, s, q] += 1
            n = st.nurse_of[r, s]
            if n >= 0:
                if q > pb.nskill[n]:
                    st.comp[1] += q - pb.nskill[n]
                before = st.n_load[n, s]
                st.n_load[n, s] = before + w
                st.comp[3] += _excess(pb, n, s, before + w) - _excess(pb, n, s, before)
                st.pn_cnt[p, n] += 1
                if st.pn_cnt[p, n] == 1:
                    st.p_dist[p] += 1
                    st.comp[2] += 1
    if p < pb.P:
        st.ot[p] = t
        du = pb.dur[p]
        st.ot_load[t, d] += du
        if st.ot_cnt[t, d] == 0:
            st.comp[4] += 1
        st.ot_cnt[t, d] += 1
        g = pb.surg[p]
        st.s_load[g, d] += du
        if st.s_ot[g, d, t] == 0:
            st.s_nots[g, d] += 1
            if st.s_nots[g, d] > 1:
                st.comp[5] += 1
        st.s_ot[g, d, t] += 1
        if d > pb.rel[p]:
            st.comp[6] += d - pb.rel[p]
        if pb.mand[p]:
            st.comp[8] -= 1
        else:
            st.comp[7] -= 1


@njit(cache=True)
def remove_person(pb, st, p):
    d = st.adm[p]
    r = st.room[p]
    end = min(pb.D, d + pb.los[p])
    for day in range(d, end):
        old = _age_spread(st, r, day, pb.AG)
        c = st.rd_cnt[r, day]
        for i in range(c):
            if st.rd_mem[r, day, i] == p:
                st.rd_mem[r, day, i] = st.rd_mem[r, day, c - 1]
                st.rd_mem[r, day, c - 1] = -1
                break
        st.rd_cnt[r, day] = c - 1
        st.rd_g[r, day, pb.gender[p]] -= 1
        st.rd_age[r, day, pb.age[p]] -= 1
        st.comp[0] += _age_spread(st, r, day, pb.AG) - old
        for k in range(pb.spd):
            s = day * pb.spd + k
            off = s - d * pb.spd
            w = pb.wl[p, off]
            q = pb.sk[p, off]
            st.rs_load[r, s] -= w
            st.rs_skh[r, s, q] -= 1
            n = st.nurse_of[r, s]
            if n >= 0:
                if q > pb.nskill[n]:
                    st.comp[1] -= q - pb.nskill[n]
                before = st.n_load[n, s]
                st.n_load[n, s] = before - w
                st.comp[3] += _excess(pb, n, s, before - w) - _excess(pb, n, s, before)
                st.pn_cnt[p, n] -= 1
                if st.pn_cnt[p, n] == 0:
                    st.p_dist[p] -= 1
                    st.comp[2] -= 1
    if p < pb.P:
        t = st.ot[p]
        du = pb.dur[p]
        st.ot_load[t, d] -= du
        st.ot_cnt[t, d] -= 1
        if st.ot_cnt[t, d] == 0:
            st.comp[4] -= 1
        g = pb.surg[p]
        st.s_load[g, d] -= du
        st.s_ot[g, d, t] -= 1
        if st.s_ot[g, d, t] == 0:
            if st.s_nots[g, d] > 1:
                st.comp[5] -= 1
            st.s_nots[g, d] -= 1
        if d > pb.rel[p]:
            st.comp[6] -= d - pb.rel[p]
        if pb.mand[p]:
            st.comp[8] += 1
        else:
            st.comp[7] += 1
        st.ot[p] = -1
    st.adm[p] = -1
    st.room[p] = -1


@njit(cache=True)
def room_ok(pb, st, p, d, r):
    """Room r can take patient p from day d: compatible, free bed, one gender, nurses on shift."""
    if pb.incomp[p, r]:
        return False
    other = 1 - pb.gender[p]
    end = min(pb.D, d + pb.los[p])
    for day in range(d, end):
        if st.rd_cnt[r, day] >= pb.cap[r] or st.rd_g[r, day, other] > 0:
            return False
        for k in range(pb.spd):
            if st.nurse_of[r, day * pb.spd + k] < 0:
                return False
    return True


@njit(cache=True)
def theatre_ok(pb, st, p, d, t):
    du = pb.dur[p]
    return st.ot_load[t, d] + du <= pb.ot_av[t, d] and st.s_load[pb.surg[p], d] + du <= pb.s_max[pb.surg[p], d]


@njit(cache=True)
def can_add(pb, st, p, d, r, t):
    if d < pb.rel[p] or d > pb.last[p] or d >= pb.D:
        return False
    return theatre_ok(pb, st, p, d, t) and room_ok(pb, st, p, d, r)


@njit(cache=True)
def set_nurse(pb, st, r, s, n2):
    """Make n2 the nurse of room r in shift s (n2 must work in s)."""
    n1 = st.nurse_of[r, s]
    if n1 == n2:
        return
    day = s // pb.spd
    load = st.rs_load[r, s]
    cnt = st.rd_cnt[r, day]
    if n1 >= 0:
        before = st.n_load[n1, s]
        st.n_load[n1, s] = before - load
        st.comp[3] += _excess(pb, n1, s, before - load) - _excess(pb, n1, s, before)
        st.comp[1] -= _shortfall(pb, st, r, s, pb.nskill[n1])
        for i in range(cnt):
            m = st.rd_mem[r, day, i]
            st.pn_cnt[m, n1] -= 1
            if st.pn_cnt[m, n1] == 0:
                st.p_dist[m] -= 1
                st.comp[2] -= 1
    st.nurse_of[r, s] = n2
    before = st.n_load[n2, s]
    st.n_load[n2, s] = before + load
    st.comp[3] += _excess(pb, n2, s, before + load) - _excess(pb, n2, s, before)
    st.comp[1] += _shortfall(pb, st, r, s, pb.nskill[n2])
    for i in range(cnt):
        m = st.rd_mem[r, day, i]
        st.pn_cnt[m, n2] += 1
        if st.pn_cnt[m, n2] == 1:
            st.p_dist[m] += 1
            st.comp[2] += 1


# ---------------------------------------------------------------------------- construction


@njit(cache=True)
def construct(pb, st, occ_room, order, optional_threshold):
    """The greedy baseline.

    Nurses are first spread over the rooms of each shift in turn; occupants are placed; then each
    patient in `order` goes to the feasible (day, room, theatre) that adds the least cost (the
    theatre chosen per day by opening and transfer cost), optional patients only if admitting
    them costs less than leaving them out (plus `optional_threshold`); last, the nurse of every
    occupied room-shift, in time order, is the working nurse that adds the least cost.
    """
    for s in range(pb.T):
        if pb.navail[s] > 0:
            for r in range(pb.R):
                set_nurse(pb, st, r, s, pb.avail[s, r % pb.navail[s]])
    for o in range(pb.PP - pb.P):
        add_person(pb, st, pb.P + o, 0, occ_room[o], -1)
    for i in range(order.shape[0]):
        p = order[i]
        best, bd, br, bt = best_slot(pb, st, p)
        if bd < 0:
            continue
        if not pb.mand[p] and best > -optional_threshold:
            continue
        add_person(pb, st, p, bd, br, bt)
    best_nurses(pb, st)


@njit(cache=True)
def best_slot(pb, st, p):
    """The feasible (day, room, theatre) where admitting patient p (not admitted now) adds the
    least cost, and that cost; day -1 if there is none. The theatre is chosen per day: feasible,
    cheapest to open or transfer to, then the fullest (it packs theatres)."""
    base = total_cost(pb, st)
    best = np.int64(1) << 62
    bd = -1
    br = -1
    bt = -1
    g = pb.surg[p]
    for d in range(pb.rel[p], min(pb.last[p], pb.D - 1) + 1):
        t_best = -1
        t_cost = np.int64(1) << 62
        for t in range(pb.NOT):
            if not theatre_ok(pb, st, p, d, t):
                continue
            c = 0
            if st.ot_cnt[t, d] == 0:
                c += pb.w[4] * 1000
            if st.s_ot[g, d, t] == 0 and st.s_nots[g, d] > 0:
                c += pb.w[5] * 1000
            c -= st.ot_load[t, d]
            if c < t_cost:
                t_cost = c
                t_best = t
        if t_best < 0:
            continue
        for j in range(pb.ncompat[p]):
            r = pb.compat[p, j]
            if not room_ok(pb, st, p, d, r):
                continue
            add_person(pb, st, p, d, r, t_best)
            delta = total_cost(pb, st) - base
            remove_person(pb, st, p)
            if delta < best:
                best = delta
                bd = d
                br = r
                bt = t_best
    return best, bd, br, bt


@njit(cache=True)
def best_nurses(pb, st):
    """Each occupied room-shift, in time order, takes the working nurse that adds the least cost
    (keeping its nurse on ties)."""
    for s in range(pb.T):
        day = s // pb.spd
        for r in range(pb.R):
            if st.rd_cnt[r, day] == 0 or pb.navail[s] == 0:
                continue
            base = total_cost(pb, st)
            keep = st.nurse_of[r, s]
            best_n = keep
            best = np.int64(0)
            for i in range(pb.navail[s]):
                n = pb.avail[s, i]
                set_nurse(pb, st, r, s, n)
                delta = total_cost(pb, st) - base
                if delta < best:
                    best = delta
                    best_n = n
            set_nurse(pb, st, r, s, best_n)


@njit(cache=True)
def polish(pb, st, passes):
    """Descent: every patient in turn is taken out and put back at their best slot (an optional
    one left out when that is cheaper), then every room-shift gets its best nurse; repeated
    while it pays, at most `passes` times. Never makes the cost worse."""
    for _ in range(passes):
        start = total_cost(pb, st)
        for p in range(pb.P):
            before = total_cost(pb, st)
            od, orr, ot = st.adm[p], st.room[p], st.ot[p]
            if od >= 0:
                remove_person(pb, st, p)
            out = total_cost(pb, st)
            best, bd, br, bt = best_slot(pb, st, p)
            choice = 0  # back where they were
            cost = before
            if out < cost:
                choice = 1  # left out (an optional patient whose admission costs more than it saves)
                cost = out
            if bd >= 0 and out + best < cost:
                choice = 2  # their best slot
            if choice == 2:
                add_person(pb, st, p, bd, br, bt)
            elif choice == 0 and od >= 0:
                add_person(pb, st, p, od, orr, ot)
        best_nurses(pb, st)
        if total_cost(pb, st) >= start:
            return


@njit(cache=True)
def load_plan(pb, st, occ_room, adm, room, ot, nurse_of):
    """Fill an empty state with a plan (nurses first, then occupants and patients)."""
    for r in range(pb.R):
        for s in range(pb.T):
            if nurse_of[r, s] >= 0:
                set_nurse(pb, st, r, s, nurse_of[r, s])
    for o in range(pb.PP - pb.P):
        add_person(pb, st, pb.P + o, 0, occ_room[o], -1)
    for p in range(pb.P):
        if adm[p] >= 0:
            add_person(pb, st, p, adm[p], room[p], ot[p])


# ---------------------------------------------------------------------------- improvement


@njit(cache=True)
def seed_rng(seed):
    np.random.seed(seed)


@njit(cache=True)
def _accept(delta, temp):
    if delta <= 0:
        return True
    if temp <= 0.0:
        return False
    return np.random.random() < np.exp(-delta / temp)


@njit(cache=True)
def _random_patient_slot(pb, st, p):
    d = pb.rel[p] + np.random.randint(0, min(pb.last[p], pb.D - 1) - pb.rel[p] + 1)
    r = pb.compat[p, np.random.randint(0, pb.ncompat[p])]
    t = np.random.randint(0, pb.NOT)
    return d, r, t


@njit(cache=True)
def _eject_insert(pb, st, p, d, r, t, ej_p, ej_d, ej_r, ej_t, ej_new, best=False):
    """Put patient p at (d, r, t), taking out whoever blocks it (same surgeon or theatre that
    day, room-mates making the room full or of the other gender), then trying each one taken
    out at a few random slots. Returns how many were taken out (their old slots in ej_*, and
    ej_new[i] = 1 when re-placed), or -1 if p cannot go there (nothing is changed then)."""
    if d < pb.rel[p] or d > pb.last[p] or d >= pb.D or pb.incomp[p, r]:
        return -1
    du = pb.dur[p]
    g = pb.surg[p]
    if du > pb.s_max[g, d] or du > pb.ot_av[t, d]:
        return -1
    end = min(pb.D, d + pb.los[p])
    other = 1 - pb.gender[p]
    for day in range(d, end):
        occ = 0
        for i in range(st.rd_cnt[r, day]):
            m = st.rd_mem[r, day, i]
            if m >= pb.P:
                occ += 1
                if pb.gender[m] == other:
                    return -1
        if occ >= pb.cap[r]:
            return -1
        for k in range(pb.spd):
            if st.nurse_of[r, day * pb.spd + k] < 0:
                return -1
    k = 0
    cap = ej_p.shape[0]
    while st.s_load[g, d] + du > pb.s_max[g, d] or st.ot_load[t, d] + du > pb.ot_av[t, d]:
        # a random patient operated that day by the same surgeon or in the same theatre
        cnt = 0
        pick = -1
        need_s = st.s_load[g, d] + du > pb.s_max[g, d]
        for q in range(pb.P):
            if st.adm[q] == d and q != p and ((need_s and pb.surg[q] == g) or (not need_s and st.ot[q] == t)):
                cnt += 1
                if np.random.randint(0, cnt) == 0:
                    pick = q
        if pick < 0 or k >= cap:
            _undo_eject(pb, st, -1, ej_p, ej_d, ej_r, ej_t, ej_new, k)
            return -1
        ej_p[k] = pick
        ej_d[k] = st.adm[pick]
        ej_r[k] = st.room[pick]
        ej_t[k] = st.ot[pick]
        ej_new[k] = 0
        k += 1
        remove_person(pb, st, pick)
    for day in range(d, end):
        while st.rd_cnt[r, day] >= pb.cap[r] or st.rd_g[r, day, other] > 0:
            want_other = st.rd_g[r, day, other] > 0
            cnt = 0
            pick = -1
            for i in range(st.rd_cnt[r, day]):
                m = st.rd_mem[r, day, i]
                if m < pb.P and (not want_other or pb.gender[m] == other):
                    cnt += 1
                    if np.random.randint(0, cnt) == 0:
                        pick = m
            if pick < 0 or k >= cap:
                _undo_eject(pb, st, -1, ej_p, ej_d, ej_r, ej_t, ej_new, k)
                return -1
            ej_p[k] = pick
            ej_d[k] = st.adm[pick]
            ej_r[k] = st.room[pick]
            ej_t[k] = st.ot[pick]
            ej_new[k] = 0
            k += 1
            remove_person(pb, st, pick)
    add_person(pb, st, p, d, r, t)
    for i in range(k):
        q = ej_p[i]
        if pb.rel[q] > min(pb.last[q], pb.D - 1) or pb.ncompat[q] == 0:
            continue
        if best:
            _, bd, br, bt = best_slot(pb, st, q)
            if bd >= 0:
                add_person(pb, st, q, bd, br, bt)
                ej_new[i] = 1
        elif place_anywhere(pb, st, q):
            ej_new[i] = 1
    return k


@njit(cache=True)
def place_anywhere(pb, st, p):
    """Admit patient p at the first feasible (day, room, theatre) from a random starting point
    of each; False if there is none."""
    first = pb.rel[p]
    last = min(pb.last[p], pb.D - 1)
    if first > last or pb.ncompat[p] == 0:
        return False
    nd = last - first + 1
    d0 = np.random.randint(0, nd)
    r0 = np.random.randint(0, pb.ncompat[p])
    t0 = np.random.randint(0, pb.NOT)
    for i in range(nd):
        d = first + (d0 + i) % nd
        t_ok = -1
        for j in range(pb.NOT):
            t = (t0 + j) % pb.NOT
            if theatre_ok(pb, st, p, d, t):
                t_ok = t
                break
        if t_ok < 0:
            continue
        for j in range(pb.ncompat[p]):
            r = pb.compat[p, (r0 + j) % pb.ncompat[p]]
            if room_ok(pb, st, p, d, r):
                add_person(pb, st, p, d, r, t_ok)
                return True
    return False


@njit(cache=True)
def _fit(pb, st, p, d, r, t):
    """Admit-ability of patient p on day d: (r, t) if they fit, else a feasible theatre and room
    found from a random starting point of each (the wanted ones first); (-1, -1) if none."""
    if d < pb.rel[p] or d > pb.last[p] or d >= pb.D:
        return -1, -1
    if not theatre_ok(pb, st, p, d, t):
        t = -1
        t0 = np.random.randint(0, pb.NOT)
        for j in range(pb.NOT):
            if theatre_ok(pb, st, p, d, (t0 + j) % pb.NOT):
                t = (t0 + j) % pb.NOT
                break
        if t < 0:
            return -1, -1
    if not room_ok(pb, st, p, d, r):
        r = -1
        r0 = np.random.randint(0, pb.ncompat[p])
        for j in range(pb.ncompat[p]):
            rr = pb.compat[p, (r0 + j) % pb.ncompat[p]]
            if room_ok(pb, st, p, d, rr):
                r = rr
                break
        if r < 0:
            return -1, -1
    return r, t


@njit(cache=True)
def _undo_eject(pb, st, p, ej_p, ej_d, ej_r, ej_t, ej_new, k):
    if p >= 0:
        for i in range(k):
            if ej_new[i]:
                remove_person(pb, st, ej_p[i])
        remove_person(pb, st, p)
    for i in range(k - 1, -1, -1):
        add_person(pb, st, ej_p[i], ej_d[i], ej_r[i], ej_t[i])


@njit(cache=True)
def repair(pb, st, tries, ej_p, ej_d, ej_r, ej_t, ej_new):
    """Admit missing mandatory patients: a random slot each, taking out whoever blocks it (then
    trying to re-place them), kept unless more mandatory patients end up missing: a random walk
    over ways of fitting them all, whatever the soft cost."""
    for _ in range(tries):
        if st.comp[8] == 0:
            return
        p = -1
        cnt = 0
        for q in range(pb.P):
            if pb.mand[q] and st.adm[q] < 0 and pb.rel[q] <= min(pb.last[q], pb.D - 1) and pb.ncompat[q] > 0:
                cnt += 1
                if np.random.randint(0, cnt) == 0:
                    p = q
        if p < 0:
            return
        before = st.comp[8]
        d, r, t = _random_patient_slot(pb, st, p)
        k = _eject_insert(pb, st, p, d, r, t, ej_p, ej_d, ej_r, ej_t, ej_new)
        if k >= 0 and st.comp[8] > before:
            _undo_eject(pb, st, p, ej_p, ej_d, ej_r, ej_t, ej_new, k)


@njit(cache=True)
def anneal(pb, st, iters, it0, total, t0, t1, probs, knobs, best_adm, best_room, best_ot, best_nurse, best_comp,
           best_cost, log_s, log_n, ej_p, ej_d, ej_r, ej_t, ej_new):
    """`iters` moves of simulated annealing from move number `it0` of `total` (geometric cooling
    from t0 to t1). The best state seen is copied into the best_* arrays; returns its cost.

    `knobs`: [0] chance that an ejection move (when no mandatory patient is missing) tries to
    admit an optional patient left out rather than move a random one; [1] > 0: patients taken
    out by an ejection go back at their best slot rather than the first feasible one; [2] chance
    that a patient move whose slot does not fit looks for a theatre and room that do that day."""
    eject_best = knobs[1] > 0
    cur = total_cost(pb, st)
    ratio = t1 / t0
    cum0 = probs[0]
    cum1 = cum0 + probs[1]
    cum2 = cum1 + probs[2]
    for it in range(it0, it0 + iters):
        temp = t0 * ratio ** (it / total)
        u = np.random.random()
        if st.comp[8] > 0 and np.random.random() < 0.2 or np.random.random() < probs[4]:
            # ---- ejection: put a patient (a missing mandatory one first) in a random slot,
            # taking out whoever blocks it
            p = -1
            if st.comp[8] > 0:
                cnt = 0
                for q in range(pb.P):
                    if pb.mand[q] and st.adm[q] < 0 and pb.rel[q] <= min(pb.last[q], pb.D - 1) and pb.ncompat[q] > 0:
                        cnt += 1
                        if np.random.randint(0, cnt) == 0:
                            p = q
            elif st.comp[7] > 0 and np.random.random() < knobs[0]:
                cnt = 0
                for q in range(pb.P):
                    if not pb.mand[q] and st.adm[q] < 0 and pb.rel[q] <= min(pb.last[q], pb.D - 1) and pb.ncompat[q] > 0:
                        cnt += 1
                        if np.random.randint(0, cnt) == 0:
                            p = q
            if p < 0:
                p = np.random.randint(0, pb.P)
                if pb.rel[p] > min(pb.last[p], pb.D - 1) or pb.ncompat[p] == 0:
                    continue
            od, orr, ot = st.adm[p], st.room[p], st.ot[p]
            if od >= 0:
                remove_person(pb, st, p)
            d, r, t = _random_patient_slot(pb, st, p)
            k = _eject_insert(pb, st, p, d, r, t, ej_p, ej_d, ej_r, ej_t, ej_new, eject_best)
            if k < 0:
                if od >= 0:
                    add_person(pb, st, p, od, orr, ot)
                continue
            new = total_cost(pb, st)
            if _accept(new - cur, temp):
                cur = new
            else:
                _undo_eject(pb, st, p, ej_p, ej_d, ej_r, ej_t, ej_new, k)
                if od >= 0:
                    add_person(pb, st, p, od, orr, ot)
                continue
        elif u < cum0:
            # ---- move one patient: new day, room, theatre, all of them, or in/out
            p = np.random.randint(0, pb.P)
            if pb.rel[p] > min(pb.last[p], pb.D - 1) or pb.ncompat[p] == 0:
                continue
            od = st.adm[p]
            if od < 0:
                if np.random.random() < 0.5:
                    if not place_anywhere(pb, st, p):
                        continue
                else:
                    d, r, t = _random_patient_slot(pb, st, p)
                    if not can_add(pb, st, p, d, r, t):
                        continue
                    add_person(pb, st, p, d, r, t)
                new = total_cost(pb, st)
                if _accept(new - cur, temp):
                    cur = new
                else:
                    remove_person(pb, st, p)
                    continue
            else:
                orr = st.room[p]
                ot = st.ot[p]
                kind = np.random.randint(0, 5)
                d, r, t = od, orr, ot
                if kind == 0:
                    d = pb.rel[p] + np.random.randint(0, min(pb.last[p], pb.D - 1) - pb.rel[p] + 1)
                elif kind == 1:
                    r = pb.compat[p, np.random.randint(0, pb.ncompat[p])]
                elif kind == 2:
                    t = np.random.randint(0, pb.NOT)
                elif kind == 3:
                    d, r, t = _random_patient_slot(pb, st, p)
                else:
                    if pb.mand[p]:
                        d = pb.rel[p] + np.random.randint(0, min(pb.last[p], pb.D - 1) - pb.rel[p] + 1)
                        t = np.random.randint(0, pb.NOT)
                    else:
                        d = -1
                if d == od and r == orr and t == ot:
                    continue
                remove_person(pb, st, p)
                if d >= 0:
                    if not can_add(pb, st, p, d, r, t):
                        if np.random.random() < knobs[2]:
                            r, t = _fit(pb, st, p, d, r, t)
                        else:
                            r = -1
                        if r < 0:
                            add_person(pb, st, p, od, orr, ot)
                            continue
                    add_person(pb, st, p, d, r, t)
                new = total_cost(pb, st)
                if _accept(new - cur, temp):
                    cur = new
                else:
                    if d >= 0:
                        remove_person(pb, st, p)
                    add_person(pb, st, p, od, orr, ot)
                    continue
        elif u < cum1:
            # ---- swap the rooms of two admitted patients
            p1 = np.random.randint(0, pb.P)
            p2 = np.random.randint(0, pb.P)
            if p1 == p2 or st.adm[p1] < 0 or st.adm[p2] < 0 or st.room[p1] == st.room[p2]:
                continue
            d1, r1, o1 = st.adm[p1], st.room[p1], st.ot[p1]
            d2, r2, o2 = st.adm[p2], st.room[p2], st.ot[p2]
            if np.random.random() < 0.3:
                # swap whole slots (day, room, theatre) when each fits the other's window
                nd1, nd2, no1, no2 = d2, d1, o2, o1
            else:
                nd1, nd2, no1, no2 = d1, d2, o1, o2
            remove_person(pb, st, p1)
            remove_person(pb, st, p2)
            if not can_add(pb, st, p1, nd1, r2, no1):
                add_person(pb, st, p1, d1, r1, o1)
                add_person(pb, st, p2, d2, r2, o2)
                continue
            add_person(pb, st, p1, nd1, r2, no1)
            if not can_add(pb, st, p2, nd2, r1, no2):
                remove_person(pb, st, p1)
                add_person(pb, st, p1, d1, r1, o1)
                add_person(pb, st, p2, d2, r2, o2)
                continue
            add_person(pb, st, p2, nd2, r1, no2)
            new = total_cost(pb, st)
            if _accept(new - cur, temp):
                cur = new
            else:
                remove_person(pb, st, p1)
                remove_person(pb, st, p2)
                add_person(pb, st, p1, d1, r1, o1)
                add_person(pb, st, p2, d2, r2, o2)
                continue
        elif u < cum2:
            # ---- another nurse for one occupied room-shift, or swap two rooms' nurses
            s = np.random.randint(0, pb.T)
            r = np.random.randint(0, pb.R)
            if st.rd_cnt[r, s // pb.spd] == 0 or pb.navail[s] < 2:
                continue
            n1 = st.nurse_of[r, s]
            if np.random.random() < 0.5:
                n2 = pb.avail[s, np.random.randint(0, pb.navail[s])]
                if n2 == n1:
                    continue
                set_nurse(pb, st, r, s, n2)
                new = total_cost(pb, st)
                if _accept(new - cur, temp):
                    cur = new
                else:
                    set_nurse(pb, st, r, s, n1)
                    continue
            else:
                r2 = np.random.randint(0, pb.R)
                n2 = st.nurse_of[r2, s]
                if n2 == n1:
                    continue
                set_nurse(pb, st, r, s, n2)
                set_nurse(pb, st, r2, s, n1)
                new = total_cost(pb, st)
                if _accept(new - cur, temp):
                    cur = new
                else:
                    set_nurse(pb, st, r2, s, n2)
                    set_nurse(pb, st, r, s, n1)
                    continue
        else:
            # ---- continuity: one nurse takes a room for every shift she works in a run of days
            r = np.random.randint(0, pb.R)
            d0 = np.random.randint(0, pb.D)
            if st.rd_cnt[r, d0] == 0:
                continue
            s0 = d0 * pb.spd + np.random.randint(0, pb.spd)
            if pb.navail[s0] == 0:
                continue
            n = pb.avail[s0, np.random.randint(0, pb.navail[s0])]
            length = 1 + np.random.randint(0, 7)
            a = max(0, d0 - np.random.randint(0, length))
            b = min(pb.D, a + length)
            k = 0
            for s in range(a * pb.spd, b * pb.spd):
                if pb.nworks[n, s] and st.nurse_of[r, s] != n and st.rd_cnt[r, s // pb.spd] > 0:
                    log_s[k] = s
                    log_n[k] = st.nurse_of[r, s]
                    k += 1
                    set_nurse(pb, st, r, s, n)
            if k == 0:
                continue
            new = total_cost(pb, st)
            if _accept(new - cur, temp):
                cur = new
            else:
                for i in range(k - 1, -1, -1):
                    set_nurse(pb, st, r, log_s[i], log_n[i])
                continue
        if cur < best_cost:
            best_cost = cur
            best_adm[:] = st.adm[: pb.P]
            best_room[:] = st.room[: pb.P]
            best_ot[:] = st.ot
            best_nurse[:, :] = st.nurse_of
            best_comp[:] = st.comp
    return best_cost
