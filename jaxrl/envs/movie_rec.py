"""A session-based movie recommender: learn a user's taste within one session, without boring them.

Registered as `MovieRec-v1`. Everything is jittable and vmappable; all floats are float32.

Catalog (fixed per env instance)
    `num_movies` (50) movies over `num_genres` (8) genres. Movie `m` has 1 or 2 genres
    (each with probability 1/2, drawn uniformly without replacement) and its genre vector
    `g_m` is multi-hot (1.0 on its genres, 0.0 elsewhere). The catalog is drawn with numpy
    from `catalog_seed` (default 0) when the env is built, so it is the same in every
    session; `env.catalog` is the `[num_movies, G]` float32 array.

Session (reset)
    * the user's latent taste `p ~ Dirichlet(PREF_CONCENTRATION = 0.3)` over the G
      genres (sums to 1): concentrated, so a user has one to three favourite genres
      (on average the largest weight is 0.52, the second 0.24, the third 0.12);
    * `num_candidates` (K = 10) distinct movies drawn uniformly from the catalog: the
      candidate set, fixed for the whole session.

Action
    `Discrete(K)`: the index of the candidate recommended this step (repeats allowed; an
    out-of-range index is clipped into [0, K - 1]).

Dynamics of one step, recommending candidate `i` (catalog id `m`)
    * affinity `a = p . g_m` in [0, 1]: the share of the user's taste the movie covers;
    * click probability
      `P(click) = sigmoid(CLICK_SCALE * (a - CLICK_CENTER))`, multiplied by
      `REPEAT_FATIGUE` when candidate `i` was already recommended earlier this session
      (whatever the outcome then), with CLICK_SCALE = 10, CLICK_CENTER = 0.25,
      REPEAT_FATIGUE = 0.7 (fresh: a = 0 gives 0.076, a = 0.25 gives 0.5, a = 0.5 gives
      0.92, a = 1 gives 0.9994);
    * on a click: reward `CLICK_REWARD = +1.0` and the consecutive-miss counter resets to
      0. A click never churns;
    * on no click: the consecutive-miss counter `c` grows by one (so it counts this miss)
      and the user churns with probability
      `P(churn) = min(1, CHURN_PER_MISS * max(c - CHURN_GRACE, 0) + CHURN_REPEAT * repeated)`
      with CHURN_PER_MISS = 0.05, CHURN_GRACE = 1 (the first miss in a row alone never
      churns), CHURN_REPEAT = 0.05 and `repeated` = 1 when candidate `i` had already been
      recommended. E.g. a fresh miss churns with probability 0 after a click, 0.05 as
      the second miss in a row, 0.45 as the tenth. A churn ends the session
      (`terminated = True`) with reward `CHURN_REWARD = -10.0`, which *replaces* the
      miss reward; a miss without churn gives `MISS_REWARD = -0.2`.
    So every reward is one of {+1.0, -0.2, -10.0}, and -10.0 occurs exactly on
    terminated steps.
    * Sessions last at most `params.max_steps_in_episode` (default 20) steps: gymnax's
      `step` sets `truncated = True` (not terminated) when `state.time` reaches it, and
      auto-resets a new session (new user, new candidates) on `terminated | truncated`.

Observation: a flat float32 vector of `K * G + 3 * K + 2 * G + 3` (129) entries, all in [0, 1]
    1. `[K * G]` the candidates' genre vectors, row-major (candidate 0's G genres first);
    2. `[K]` 1.0 where the candidate was already recommended this session;
    3. `[G]` the mean genre vector of the movies clicked so far (zeros before any click);
    4. `[G]` the mean genre vector of the recommendations not clicked so far (zeros
       before any miss);
    5. `[K]` each candidate's match with the clicks: its genre vector dotted with (3),
       divided by its number of genres;
    6. `[K]` the same match with the misses (4);
    7. consecutive misses / max_steps_in_episode;
    8. clicks so far / max_steps_in_episode;
    9. steps taken / max_steps_in_episode (the time-step fraction);
    (7-9 are clipped to 1 should params and counters ever disagree).
    The taste `p` is hidden: an agent must infer it from what was clicked and missed. The
    match features (5, 6) are user-item features as a production recommender would compute
    them; they spare a flat MLP from learning a bilinear match per candidate slot, which
    it does poorly from a few hundred thousand steps.

Info of `step_env`: `"clicked"` (bool) and `"movie"` (int32 catalog id of the
recommended movie); gymnax's `step` adds `"terminated"`, `"truncated"` and
`"final_observation"`.

Measured over 2000 sessions (several seeds): a uniformly random recommender averages a
return of about -5.0 (three sessions in four churn); recommending the fresh candidate
most like the clicked movies (random before the first click) about +0.6 (+0.2 to +0.9,
half the sessions churn); a greedy policy that knows the hidden taste about +6.2.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

PREF_CONCENTRATION = 0.3
CLICK_SCALE = 10.0
CLICK_CENTER = 0.25
REPEAT_FATIGUE = 0.7
CHURN_PER_MISS = 0.05
CHURN_GRACE = 1
CHURN_REPEAT = 0.05
CLICK_REWARD = 1.0
MISS_REWARD = -0.2
CHURN_REWARD = -10.0


@struct.dataclass
class MovieRecState:
    pref: chex.Array  # [G] the user's latent genre taste (sums to 1)
    candidates: chex.Array  # [K] int32 catalog ids of this session's candidates
    recommended: chex.Array  # [K] bool, candidate already recommended this session
    clicked_sum: chex.Array  # [G] sum of the clicked movies' genre vectors
    missed_sum: chex.Array  # [G] sum of the missed recommendations' genre vectors
    clicks: chex.Array  # int32, clicks so far
    misses: chex.Array  # int32, misses so far
    consecutive_misses: chex.Array  # int32, misses since the last click
    time: chex.Array  # int32, steps taken in this session


@struct.dataclass
class MovieRecParams(environment.EnvParams):
    max_steps_in_episode: int = 20


def make_catalog(num_movies: int, num_genres: int, seed: int) -> np.ndarray:
    """`[num_movies, num_genres]` float32 multi-hot genre vectors with 1 or 2 genres each."""
    rng = np.random.default_rng(seed)
    catalog = np.zeros((num_movies, num_genres), np.float32)
    for m in range(num_movies):
        n = 1 + int(rng.integers(0, 2)) if num_genres > 1 else 1
        catalog[m, rng.choice(num_genres, size=n, replace=False)] = 1.0
    return catalog


class MovieRec(environment.Environment):
    """See the module docstring for the full dynamics."""

    trace_info = ("movie", "clicked")  # step info that `jaxrl eval --trace` prints per step

    def __init__(self, num_movies: int = 50, num_genres: int = 8, num_candidates: int = 10,
                 catalog_seed: int = 0):
        super().__init__()
        if not 1 <= num_candidates <= num_movies:
            raise ValueError(f"num_candidates must be in [1, num_movies={num_movies}], got {num_candidates}")
        self.num_movies = num_movies
        self.num_genres = num_genres
        self.num_candidates = num_candidates
        self.catalog_seed = catalog_seed
        self.catalog = make_catalog(num_movies, num_genres, catalog_seed)

    @property
    def default_params(self) -> MovieRecParams:
        return MovieRecParams()

    @property
    def obs_size(self) -> int:
        k, g = self.num_candidates, self.num_genres
        return k * g + 3 * k + 2 * g + 3

    def reset_env(self, key: chex.PRNGKey, params: MovieRecParams):
        key_pref, key_cand = jax.random.split(key)
        g, k = self.num_genres, self.num_candidates
        pref = jax.random.dirichlet(key_pref, jnp.full((g,), PREF_CONCENTRATION, jnp.float32))
        candidates = jax.random.choice(key_cand, self.num_movies, (k,), replace=False).astype(jnp.int32)
        zero = jnp.int32(0)
        state = MovieRecState(
            pref=pref.astype(jnp.float32), candidates=candidates, recommended=jnp.zeros((k,), bool),
            clicked_sum=jnp.zeros((g,), jnp.float32), missed_sum=jnp.zeros((g,), jnp.float32),
            clicks=zero, misses=zero, consecutive_misses=zero, time=zero)
        return self.get_obs(state, params), state

    def click_probability(self, state: MovieRecState, action: chex.Array) -> chex.Array:
        """P(click) for recommending candidate `action` in `state`."""
        genres = jnp.asarray(self.catalog)[state.candidates[action]]
        affinity = jnp.dot(state.pref, genres)
        p = jax.nn.sigmoid(CLICK_SCALE * (affinity - CLICK_CENTER))
        return jnp.where(state.recommended[action], REPEAT_FATIGUE * p, p)

    def step_env(self, key: chex.PRNGKey, state: MovieRecState, action, params: MovieRecParams):
        key_click, key_churn = jax.random.split(key)
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.num_candidates - 1)
        movie = state.candidates[action]
        genres = jnp.asarray(self.catalog)[movie]
        repeated = state.recommended[action]

        clicked = jax.random.uniform(key_click) < self.click_probability(state, action)
        consecutive = jnp.where(clicked, 0, state.consecutive_misses + 1).astype(jnp.int32)
        p_churn = jnp.minimum(1.0, CHURN_PER_MISS * jnp.maximum(consecutive - CHURN_GRACE, 0)
                              + CHURN_REPEAT * repeated)
        churned = jnp.logical_and(~clicked, jax.random.uniform(key_churn) < p_churn)
        reward = jnp.where(clicked, CLICK_REWARD, jnp.where(churned, CHURN_REWARD, MISS_REWARD))

        new_state = MovieRecState(
            pref=state.pref, candidates=state.candidates,
            recommended=state.recommended.at[action].set(True),
            clicked_sum=state.clicked_sum + jnp.where(clicked, genres, 0.0),
            missed_sum=state.missed_sum + jnp.where(clicked, 0.0, genres),
            clicks=state.clicks + clicked.astype(jnp.int32),
            misses=state.misses + (~clicked).astype(jnp.int32),
            consecutive_misses=consecutive, time=state.time + 1)
        info = {"clicked": clicked, "movie": movie.astype(jnp.int32)}
        return self.get_obs(new_state, params), new_state, reward.astype(jnp.float32), churned, info

    def get_obs(self, state: MovieRecState, params=None, key=None) -> chex.Array:
        params = self.default_params if params is None else params
        horizon = jnp.float32(params.max_steps_in_episode)
        cand_genres = jnp.asarray(self.catalog)[state.candidates]
        clicked_mean = state.clicked_sum / jnp.maximum(state.clicks, 1).astype(jnp.float32)
        missed_mean = state.missed_sum / jnp.maximum(state.misses, 1).astype(jnp.float32)
        genres_per_movie = jnp.maximum(cand_genres.sum(axis=-1), 1.0)
        click_match = cand_genres @ clicked_mean / genres_per_movie
        miss_match = cand_genres @ missed_mean / genres_per_movie
        scalars = jnp.stack([state.consecutive_misses, state.clicks, state.time]).astype(jnp.float32)
        obs = jnp.concatenate([cand_genres.reshape(-1), state.recommended.astype(jnp.float32),
                               clicked_mean, missed_mean, click_match, miss_match,
                               jnp.minimum(scalars / horizon, 1.0)])
        return obs.astype(jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(self.num_candidates)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (self.obs_size,), jnp.float32)

    @property
    def num_actions(self) -> int:
        return self.num_candidates

    @property
    def name(self) -> str:
        return "MovieRec-v1"


@functools.wraps(MovieRec, updated=())  # `make` reads the kwargs MovieRec takes through this
def _make(**kwargs):
    env = MovieRec(**kwargs)
    return env, env.default_params


def register_movie_rec(register) -> None:
    register("MovieRec-v1", _make)
