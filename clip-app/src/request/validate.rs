//! [`RunRequest::validate`]: every check of a request that needs no model, in one place, before
//! any work — each error names its setting ([`Setting`]), which every front end spells its own
//! way (`--tv-weight`, `tv_weight`).

use super::{bounds, RunRequest};
use crate::output;
use clip_core::clip::preprocess;
use clip_core::engine::augment::{self, Augment};
use clip_core::engine::param::{Param, MAX_CANVAS, MIN_CANVAS};

/// A setting of the request, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Models,
    ModelWeight,
    Prompts,
    Negative,
    NegativeWeight,
    Init,
    Epsilon,
    Name,
    Decay,
    Augment,
    Size,
    Steps,
    LearningRate,
    TvWeight,
    LogEvery,
}

impl Setting {
    /// The setting's key: the Python keyword and the SPEC's key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Models => "models",
            Self::ModelWeight => "model_weight",
            Self::Prompts => "prompts",
            Self::Negative => "negative",
            Self::NegativeWeight => "negative_weight",
            Self::Init => "init",
            Self::Epsilon => "epsilon",
            Self::Name => "name",
            Self::Decay => "decay",
            Self::Augment => "augment",
            Self::Size => "size",
            Self::Steps => "steps",
            Self::LearningRate => "learning_rate",
            Self::TvWeight => "tv_weight",
            Self::LogEvery => "log_every",
        }
    }

    /// The command line's flag.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Models => "--model/--weights",
            Self::ModelWeight => "--model-weight",
            Self::Prompts => "--prompt",
            Self::Negative => "--negative",
            Self::NegativeWeight => "--negative-weight",
            Self::Init => "--init",
            Self::Epsilon => "--epsilon",
            Self::Name => "--name",
            Self::Decay => "--decay",
            Self::Augment => "--augment",
            Self::Size => "--size",
            Self::Steps => "--steps",
            Self::LearningRate => "--learning-rate",
            Self::TvWeight => "--tv-weight",
            Self::LogEvery => "--log-every",
        }
    }
}

/// A request that cannot be carried out: the setting, and what is wrong with it. Shown as the
/// command line's flag and the problem; front ends that spell settings otherwise use
/// [`Setting::key`] and [`RequestError::problem`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} {problem}", setting.flag())]
pub struct RequestError {
    pub setting: Setting,
    pub problem: String,
}

fn bad<T>(setting: Setting, problem: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError { setting, problem: problem.into() })
}

/// `check`'s message as `setting`'s problem.
fn within<T>(setting: Setting, check: Result<T, String>) -> Result<T, RequestError> {
    check.or_else(|e| bad(setting, e))
}

impl RunRequest {
    /// Every check that needs no model: the models (given, each once, one weight each, the
    /// weights in range and their sum finite), the prompts (given, each its own files), the
    /// start photo (a readable image, with the pixels parameterisation; a budget only with one),
    /// the name, and every setting's range (the same bounds as the flags). The model's
    /// resolution is checked against the canvas and the pipeline when the models are known
    /// ([`RunRequest::known_resolution`]), else when they are loaded.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.validate_shared()?;
        // Two prompts that would share a file are refused whatever the model.
        if let Err(e) = output::file_stems(&self.name, "model", &self.prompts) {
            return bad(Setting::Prompts, e.to_string());
        }
        Ok(())
    }

    /// [`validate`](Self::validate) but for the prompts' file names: for a sweep's batch, whose
    /// rows each have their own name (the run checks those).
    pub fn validate_shared(&self) -> Result<(), RequestError> {
        self.validate_models()?;
        self.validate_texts()?;
        self.validate_start()?;
        self.validate_settings()?;
        within(Setting::Name, bounds::name(&self.name))?;
        if self.log_every < 1 {
            return bad(Setting::LogEvery, "must be at least 1");
        }
        Ok(())
    }

    fn validate_models(&self) -> Result<(), RequestError> {
        if self.models.is_empty() {
            return bad(Setting::Models, "none given: give --weights PATH or --model NAME");
        }
        let keys: Vec<String> = self.models.iter().map(|m| m.identity()).collect();
        for (i, k) in keys.iter().enumerate() {
            if let Some(j) = keys[..i].iter().position(|other| other == k) {
                return bad(
                    Setting::Models,
                    format!(
                        "given twice: {} is models {} and {} of the ensemble; an ensemble's \
                         models must differ",
                        self.models[i].describe(),
                        j + 1,
                        i + 1
                    ),
                );
            }
        }
        let weights = &self.model_weights;
        if !weights.is_empty() && weights.len() != self.models.len() {
            return bad(
                Setting::ModelWeight,
                format!(
                    "is given {} time(s) for {} model(s): give one per model, in their order",
                    weights.len(),
                    self.models.len()
                ),
            );
        }
        for &w in weights {
            within(Setting::ModelWeight, bounds::model_weight(w))?;
        }
        let total: f64 = weights.iter().sum();
        if !total.is_finite() {
            return bad(Setting::ModelWeight, format!("the weights' sum overflows: {total}"));
        }
        Ok(())
    }

    fn validate_texts(&self) -> Result<(), RequestError> {
        if self.prompts.is_empty() {
            return bad(Setting::Prompts, "none given: give at least one prompt");
        }
        within(Setting::NegativeWeight, bounds::penalty_weight(self.settings.negative_weight))?;
        Ok(())
    }

    fn validate_start(&self) -> Result<(), RequestError> {
        let param = self.settings.param;
        match &self.init {
            Some(photo) => {
                if param != Param::Pixels {
                    return bad(
                        Setting::Init,
                        format!(
                            "needs --param pixels, not {param}: a photo is a start for the pixels \
                             themselves; the other parameterisations start from their own noise \
                             in another space"
                        ),
                    );
                }
                if let Err(e) = preprocess::load_rgb(photo) {
                    return bad(Setting::Init, format!("{}: {e}", photo.display()));
                }
            }
            None if self.settings.epsilon.is_some() => {
                return bad(
                    Setting::Epsilon,
                    "needs --init PHOTO: the budget is around the start photo",
                );
            }
            None => {}
        }
        if let Some(e) = self.settings.epsilon {
            within(Setting::Epsilon, bounds::epsilon(e))?;
        }
        Ok(())
    }

    fn validate_settings(&self) -> Result<(), RequestError> {
        let s = &self.settings;
        within(Setting::Steps, bounds::steps(s.steps as u64))?;
        within(Setting::LearningRate, bounds::learning_rate(s.learning_rate))?;
        within(Setting::TvWeight, bounds::penalty_weight(s.tv_weight))?;
        within(Setting::Decay, bounds::decay(s.decay))?;
        if let Some(c) = s.canvas {
            for side in [c.width, c.height] {
                if !(MIN_CANVAS..=MAX_CANVAS).contains(&side) {
                    return bad(
                        Setting::Size,
                        format!("a side of {side} pixels is outside {MIN_CANVAS}..={MAX_CANVAS}"),
                    );
                }
            }
        }
        // An augmentation built in code (a model crate's constants) meets the parser's bounds.
        for a in &s.augment {
            within(Setting::Augment, a.to_string().parse::<Augment>())?;
        }
        if let Some(res) = self.known_resolution() {
            let canvas = s.canvas_for(res);
            within(
                Setting::Augment,
                augment::view_size(&s.augment, (canvas.height, canvas.width), res),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::ModelSource;
    use clip_core::clip::released;
    use clip_core::engine::optimize::Preset;

    fn request() -> RunRequest {
        RunRequest::preset(
            Preset::Constrained,
            vec![ModelSource::Released(&released::RN50)],
            vec!["a dog".to_string(), "a cat".to_string()],
        )
    }

    fn refused(r: &RunRequest) -> Setting {
        r.validate().expect_err("refused").setting
    }

    #[test]
    fn a_preset_request_is_valid_and_round_trips_through_json() {
        let r = request();
        r.validate().unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"augment\":[\"affine:10,0.1,0.9,1.1\",\"flip:0.3\"]"), "{json}");
        let back: RunRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_bad_name_is_quoted_once() {
        let mut r = request();
        r.name = "-x y".to_string();
        let message = r.validate().expect_err("refused").to_string();
        assert!(message.starts_with("--name \"-x y\" is not a file-name token"), "{message}");
    }

    #[test]
    fn each_check_names_its_setting() {
        let mut r = request();
        r.models.clear();
        assert_eq!(refused(&r), Setting::Models);
        let mut r = request();
        r.models.push(ModelSource::Released(&released::RN50));
        assert_eq!(refused(&r), Setting::Models);
        let mut r = request();
        r.model_weights = vec![1.0, 2.0];
        assert_eq!(refused(&r), Setting::ModelWeight);
        r.models.push(ModelSource::Released(&released::VIT_B_32));
        r.model_weights = vec![1e308, 1e308];
        assert_eq!(refused(&r), Setting::ModelWeight);
        let mut r = request();
        r.prompts = vec!["a dog".into(), "a dog".into()];
        assert_eq!(refused(&r), Setting::Prompts);
        let mut r = request();
        r.settings.epsilon = Some(0.1);
        assert_eq!(refused(&r), Setting::Epsilon);
        let mut r = request();
        r.init = Some("photo.jpg".into());
        r.settings.param = Param::Fft;
        assert_eq!(refused(&r), Setting::Init);
        let mut r = request();
        r.settings.tv_weight = 1e308;
        assert_eq!(refused(&r), Setting::TvWeight);
        let mut r = request();
        r.settings.negative_weight = f64::NAN;
        assert_eq!(refused(&r), Setting::NegativeWeight);
        let mut r = request();
        r.settings.decay = 300.0;
        assert_eq!(refused(&r), Setting::Decay);
        let mut r = request();
        r.settings.learning_rate = 0.0;
        assert_eq!(refused(&r), Setting::LearningRate);
        let mut r = request();
        r.settings.steps = 0;
        assert_eq!(refused(&r), Setting::Steps);
        let mut r = request();
        r.name = "-x".into();
        assert_eq!(refused(&r), Setting::Name);
        let mut r = request();
        r.log_every = 0;
        assert_eq!(refused(&r), Setting::LogEvery);
        // An augmentation built in code (a model crate's constants) meets the flags' bounds.
        let mut r = request();
        r.settings.augment = vec![Augment::Noise { sd: 1e308 }];
        assert_eq!(refused(&r), Setting::Augment);
        let mut r = request();
        r.settings.augment = vec![Augment::Pad { px: 1024 }; 4];
        assert_eq!(refused(&r), Setting::Augment, "views past 8192 pixels with RN50's 224");
        let e = request_with_tv(1e308).validate().unwrap_err();
        assert_eq!(e.to_string(), "--tv-weight must be 0 or more and at most 1e6, not 1e308");
    }

    fn request_with_tv(tv: f64) -> RunRequest {
        let mut r = request();
        r.settings.tv_weight = tv;
        r
    }
}
