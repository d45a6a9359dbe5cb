//! Places on the Earth: the areas the query language's `near:` and `bbox:` select, in degrees of
//! WGS 84 latitude and longitude (what EXIF GPS and GeoTIFF's geographic pictures carry).
//! Distances are great-circle distances on the mean Earth radius: within 0.5% of the ellipsoid's,
//! far finer than the radius anyone asks for.

pub mod places;

/// The mean Earth radius (IUGG), in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Whether a latitude and longitude name a place (and not EXIF's garbage).
pub fn is_valid(latitude: f64, longitude: f64) -> bool {
    (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude)
}

/// The great-circle distance between two places, in metres (the haversine formula, which stays
/// exact for short distances where the law of cosines loses them to rounding).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat_a, lat_b) = (a.0.to_radians(), b.0.to_radians());
    let half_dlat = (lat_b - lat_a) / 2.0;
    let half_dlon = (b.1 - a.1).to_radians() / 2.0;
    let h = half_dlat.sin().powi(2) + lat_a.cos() * lat_b.cos() * half_dlon.sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// An area of the Earth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Area {
    /// Within `radius_m` metres of a place.
    Around { latitude: f64, longitude: f64, radius_m: f64 },
    /// A box between two parallels and two meridians. `west > east` crosses the antimeridian
    /// (170 → -170 is the 20° around ±180), as GeoJSON and STAC boxes do.
    Box { west: f64, south: f64, east: f64, north: f64 },
}

/// The latitudes and the longitude ranges (one, or two across the antimeridian) that hold an
/// area: what an index on latitude and longitude can narrow by.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub latitudes: (f64, f64),
    pub longitudes: Vec<(f64, f64)>,
}

impl Area {
    pub fn contains(&self, latitude: f64, longitude: f64) -> bool {
        match *self {
            Area::Around { latitude: lat, longitude: lon, radius_m } => {
                distance_m((lat, lon), (latitude, longitude)) <= radius_m
            }
            Area::Box { .. } => {
                let bounds = self.bounds();
                (bounds.latitudes.0..=bounds.latitudes.1).contains(&latitude)
                    && bounds.longitudes.iter().any(|(w, e)| (*w..=*e).contains(&longitude))
            }
        }
    }

    /// The smallest latitude band and longitude ranges that hold the area: exactly the box, or
    /// the box around the circle (all longitudes when it reaches a pole).
    pub fn bounds(&self) -> Bounds {
        match *self {
            Area::Box { west, south, east, north } => Bounds {
                latitudes: (south, north),
                longitudes: if west <= east { vec![(west, east)] } else { vec![(west, 180.0), (-180.0, east)] },
            },
            Area::Around { latitude, longitude, radius_m } => {
                let angle = (radius_m / EARTH_RADIUS_M).to_degrees();
                let (south, north) = (latitude - angle, latitude + angle);
                if south <= -90.0 || north >= 90.0 || angle >= 90.0 {
                    return Bounds {
                        latitudes: (south.max(-90.0), north.min(90.0)),
                        longitudes: vec![(-180.0, 180.0)],
                    };
                }
                // The widest longitude the circle reaches (at the latitude where it touches its
                // meridians, not at its centre's): asin(sin(angle) / cos(latitude)).
                let ratio = angle.to_radians().sin() / latitude.to_radians().cos();
                if ratio >= 1.0 {
                    return Bounds { latitudes: (south, north), longitudes: vec![(-180.0, 180.0)] };
                }
                let half_width = ratio.asin().to_degrees();
                let (west, east) = (longitude - half_width, longitude + half_width);
                let longitudes = if west < -180.0 {
                    vec![(west + 360.0, 180.0), (-180.0, east)]
                } else if east > 180.0 {
                    vec![(west, 180.0), (-180.0, east - 360.0)]
                } else {
                    vec![(west, east)]
                };
                Bounds { latitudes: (south, north), longitudes }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_known_ones() {
        // Paris (Notre-Dame) to London (Charing Cross): 343.5 km on the sphere.
        let d = distance_m((48.8530, 2.3499), (51.5073, -0.1276));
        assert!((d - 343_500.0).abs() < 1_000.0, "{d}");
        // One degree of a meridian, and a metre-scale step that the law of cosines would lose.
        assert!((distance_m((0.0, 0.0), (1.0, 0.0)) - 111_195.0).abs() < 1.0);
        assert!((distance_m((45.0, 7.0), (45.00001, 7.0)) - 1.112).abs() < 0.001);
        // Across the antimeridian the short way.
        assert!((distance_m((0.0, 179.5), (0.0, -179.5)) - 111_195.0).abs() < 1.0);
    }

    #[test]
    fn a_circle_holds_what_is_within_its_radius_and_its_bounds_hold_the_circle() {
        let places = [(48.8566, 2.3522), (-33.86, 151.21), (0.0, 179.99), (69.65, 18.96), (89.95, 40.0)];
        for (lat, lon) in places {
            for radius_m in [50.0, 1_000.0, 25_000.0, 600_000.0] {
                let area = Area::Around { latitude: lat, longitude: lon, radius_m };
                let bounds = area.bounds();
                // Points on a ring just inside and just outside the radius, all around.
                for step in 0..72 {
                    let bearing = (step as f64 * 5.0).to_radians();
                    for (factor, inside) in [(0.999, true), (1.001, false)] {
                        let (p_lat, p_lon) = destination((lat, lon), bearing, radius_m * factor);
                        assert_eq!(area.contains(p_lat, p_lon), inside, "{lat},{lon} r={radius_m} step {step}");
                        if inside {
                            let in_bounds = (bounds.latitudes.0..=bounds.latitudes.1).contains(&p_lat)
                                && bounds.longitudes.iter().any(|(w, e)| (*w..=*e).contains(&p_lon));
                            assert!(in_bounds, "{p_lat},{p_lon} outside {bounds:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_box_across_the_antimeridian_is_two_ranges() {
        let area = Area::Box { west: 170.0, south: -20.0, east: -170.0, north: -10.0 };
        assert!(area.contains(-15.0, 175.0) && area.contains(-15.0, -175.0) && area.contains(-10.0, 180.0));
        assert!(!area.contains(-15.0, 0.0) && !area.contains(-21.0, 175.0));
        assert!(Area::Box { west: -10.0, south: 35.0, east: 5.0, north: 44.0 }.contains(40.4, -3.7));
    }

    /// The place `distance` metres from `from` on the initial `bearing` (radians from north).
    fn destination(from: (f64, f64), bearing: f64, distance: f64) -> (f64, f64) {
        let (lat, lon) = (from.0.to_radians(), from.1.to_radians());
        let angle = distance / EARTH_RADIUS_M;
        let lat2 = (lat.sin() * angle.cos() + lat.cos() * angle.sin() * bearing.cos()).asin();
        let lon2 = lon + (bearing.sin() * angle.sin() * lat.cos()).atan2(angle.cos() - lat.sin() * lat2.sin());
        let lon2 = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
        (lat2.to_degrees(), lon2)
    }
}
